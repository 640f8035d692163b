package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/breachd/breachd/store"
)

// rekey runs 'breachd rekey --data DIR --index-key FILE': the email corpus
// of DIR, stopped, is rewritten keyed (store.Rekey).
func rekey(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("breachd rekey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "corpus directory (the daemon must not be running on it)")
	keyFile := fs.String("index-key", "", "the index key file ('breachd keys index create'); the daemon then needs it as privacy.index_key_file")
	private := fs.Bool("private", false, "also write every account's private row, for private checks (privacy.private_lookups): an OPRF evaluation each, about 95 µs of CPU, on every core")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: breachd rekey --data DIR --index-key FILE [--private]

Rewrites the email corpus of DIR so that it stores a keyed SHA-256 of each digest
for every account, never the digest: without the key, the directory cannot
be used to test addresses. Answers do not change. It cannot be undone or
rotated from the keyed corpus (it holds no digests): keep the original dumps.
Replicas start again from the writer's next snapshot, and need the key too.

Flags:`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" || *keyFile == "" || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	key, err := store.ReadIndexKey(*keyFile)
	if err != nil {
		return err
	}
	t := target{data: *data}
	if err := t.checkOwner(); err != nil {
		return err
	}
	o := store.DefaultOptions()
	o.Logger, o.BackgroundShare, o.Private = log, 1, *private
	st, err := store.Rekey(ctx, *data, key, o)
	if err != nil {
		return t.lockedError(err)
	}
	fmt.Fprintf(stdout, "email corpus keyed with index key %s: %d accounts, %d other records, in %s\nstart breachd with privacy.index_key_file: %s\n",
		key.ID(), st.Rows, st.Records, st.Duration.Round(1e6), *keyFile)
	if *private {
		fmt.Fprintln(stdout, "and with privacy.private_lookups: true")
	}
	return nil
}
