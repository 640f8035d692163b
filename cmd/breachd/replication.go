package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/store"
)

// takeover hands the writer lease of the NATS buckets to the writer whose
// data directory and NATS URL the flags name (serve's flags and
// configuration: --data, --publish, the replication keys).
func takeover(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	c, err := loadProcessConfig("breachd replication takeover", args, stderr)
	if err != nil {
		return err
	}
	if c.Data == "" || c.Replication.Publish == "" {
		fmt.Fprintln(stderr, "usage: breachd replication takeover --data DIR --publish NATS_URL [--config FILE]\n\n"+
			"Makes the writer whose data directory is DIR the one that publishes to the NATS buckets; the writer that held\n"+
			"the lease stops publishing at its next attempt and exits, and replicas ignore anything it still publishes.")
		return errUsage
	}
	if err := c.validate(); err != nil {
		return err
	}
	o, err := c.natsOptions(c.Replication.Publish, log)
	if err != nil {
		return err
	}
	id, err := natsrepl.WriterID(c.Data)
	if err != nil {
		return err
	}
	addr := c.Replication.Advertise
	if addr == "" {
		addr = c.Addr
	}
	old, now, err := natsrepl.Takeover(ctx, o, id, addr)
	if err != nil {
		return fmt.Errorf("takeover of the writer lease of bucket %s: %w", o.KVBucket, err)
	}
	prev := "nobody held it"
	if old != nil {
		prev = "it was held by " + old.String()
	}
	fmt.Fprintf(stdout, "writer lease of bucket %s: now held by %s; %s.\n"+
		"Start this writer with 'breachd serve --data %s --publish %s'. Replicas start again from its first snapshot unless its corpus continues the old writer's.\n",
		o.KVBucket, now, prev, c.Data, c.Replication.Publish)
	return nil
}

// promote turns a stopped read replica's data directory into one a writer
// may serve, for a writer whose own disk was lost: every corpus is checked
// first (each must hold a whole version of its writer's), then each
// replica's record of following is removed. Run again, it finishes a
// promotion cut short.
func promote(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("breachd replication promote", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "the stopped replica's data directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: breachd replication promote --data DIR\n\n"+
			"Turns the stopped read replica's data directory DIR into a writer's, for a writer whose disk was lost.\n"+
			"Then: 'breachd replication takeover --data DIR --publish NATS_URL', and 'breachd serve --data DIR --publish NATS_URL'.")
		return errUsage
	}
	dirs := store.ReplicatedDirs(*data)
	for _, dir := range dirs {
		unlock, err := store.LockDir(dir)
		if err != nil {
			return fmt.Errorf("%w: stop the replica first", err)
		}
		defer unlock()
	}
	for _, dir := range dirs {
		if err := natsrepl.CanPromote(dir); err != nil {
			return err
		}
	}
	n := 0
	for _, dir := range dirs {
		did, err := natsrepl.Promote(dir)
		if err != nil {
			return err
		}
		if did {
			n++
		}
	}
	if n == 0 {
		fmt.Fprintf(stdout, "%s holds no read replica's corpus: nothing to promote.\n", *data)
		return nil
	}
	fmt.Fprintf(stdout, "promoted %d corpora in %s to a writer's. Watchlists are not replicated: create them again.\n"+
		"Next: 'breachd replication takeover --data %s --publish NATS_URL', then 'breachd serve --data %s --publish NATS_URL';\n"+
		"replicas start again from its first snapshot.\n", n, *data, *data, *data)
	return nil
}
