package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/store"
)

const keysUsage = `usage: breachd keys <create|list|revoke> --data DIR [flags]
       breachd keys index create --out FILE

  index create --out FILE
         a new index key (privacy.index_key_file, breachd rekey), in a new
         file (0600) outside the data directory: whoever has the data
         directory and not the key cannot test addresses against it

  create --name NAME --scopes check,bulk,admin [--rate N --burst N] [--out FILE]
         prints the new key once, as the last line, or writes it to FILE
         (created 0600; never overwritten); only its hash is kept
  list   the keys' names, scopes and quotas (never the keys)
  revoke --name NAME
         a running daemon stops accepting the key within seconds
`

func keys(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return errUsage
	}
	if args[0] == "index" {
		return indexKeys(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("breachd keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "corpus directory whose keys.json to change (required)")
	name := fs.String("name", "", "the principal the key identifies")
	scopes := fs.String("scopes", "", "comma-separated: check (Check, ListBreaches, GetBreach), bulk (CheckStream), admin (imports)")
	rate := fs.Float64("rate", 0, "this key's quota in tokens per second (a call costs 1, a bulk batch its digest count); 0: the daemon's default")
	burst := fs.Int("burst", 0, "this key's bucket size; 0: the daemon's default")
	out := fs.String("out", "", "create: write the key to this new file (mode 0600) instead of printing it")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	usage := func(msg string) error {
		fmt.Fprintf(stderr, "breachd keys %s: %s\n\n%s", args[0], msg, keysUsage)
		return errUsage
	}
	if *data == "" || fs.NArg() > 0 {
		return usage("--data is required, and nothing else goes after the flags")
	}
	switch args[0] {
	case "create":
		if *name == "" || *scopes == "" {
			return usage("--name and --scopes are required")
		}
		sc, err := auth.ParseScopes(*scopes)
		if err != nil {
			return err
		}
		var f *os.File
		if *out != "" { // before the key exists: a file that cannot be made leaves no key behind
			if f, err = os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
				return fmt.Errorf("--out: %w (the key file is never overwritten; remove it or name another)", err)
			}
			defer f.Close()
		}
		key, err := auth.CreateKey(*data, *name, sc, *rate, *burst)
		if err != nil {
			if f != nil {
				os.Remove(*out)
			}
			return err
		}
		if f != nil {
			if _, err := f.WriteString(key + "\n"); err != nil {
				return fmt.Errorf("--out: %w; the key was created: revoke it ('breachd keys revoke --name %s') and create another", err, *name)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("--out: %w; the key was created: revoke it ('breachd keys revoke --name %s') and create another", err, *name)
			}
			fmt.Fprintf(stdout, "created key %s with scopes %s; written to %s (mode 0600)\n", *name, joinScopes(sc), *out)
			return nil
		}
		if _, err := fmt.Fprintf(stdout, "created key %s with scopes %s; store it now, it is not shown again:\n%s\n", *name, joinScopes(sc), key); err != nil {
			// '> key.txt' on a full disk: the key exists, and nobody has it.
			return fmt.Errorf("writing the key: %w; the key was created: revoke it ('breachd keys revoke --name %s') and create another (--out FILE writes it to a file)", err, *name)
		}
	case "list":
		ks, err := auth.ListKeys(*data)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSCOPES\tRATE\tBURST\tCREATED")
		for _, k := range ks {
			r, b := "default", "default"
			if k.Rate > 0 {
				r, b = fmt.Sprint(k.Rate), fmt.Sprint(k.Burst)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Name, joinScopes(k.Scopes), r, b, k.Created.Format(time.RFC3339))
		}
		tw.Flush()
	case "revoke":
		if *name == "" {
			return usage("--name is required")
		}
		if err := auth.RevokeKey(*data, *name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked key %s\n", *name)
	default:
		return usage(fmt.Sprintf("unknown command %q", args[0]))
	}
	return nil
}

func joinScopes(sc []auth.Scope) string {
	s := make([]string, len(sc))
	for i, x := range sc {
		s[i] = string(x)
	}
	return strings.Join(s, ",")
}

// indexKeys runs 'breachd keys index create --out FILE'.
func indexKeys(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprint(stderr, keysUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("breachd keys index create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "the new key file (created 0600; never overwritten); keep it outside the data directory")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "breachd keys index create: --out FILE is required\n\n%s", keysUsage)
		return errUsage
	}
	k, err := store.GenerateIndexKey(*out)
	if err != nil {
		return fmt.Errorf("--out: %w (a key file is never overwritten)", err)
	}
	fmt.Fprintf(stdout, "index key %s written to %s\nkeep it outside the data directory, and back it up: a keyed corpus cannot be read without it, nor rekeyed from itself\n", k.ID(), *out)
	return nil
}
