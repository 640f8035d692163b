package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/breachd/breachd/internal/interrupt"
)

func main() {
	// What breachd writes (corpus tables, filters, indexes, key files) is
	// its owner's alone, as under the unit's UMask=0077: Badger creates
	// its tables with the umask's mode (0644 by default).
	syscall.Umask(0o077)
	if len(os.Args) > 1 && os.Args[1] == "serve" && os.Getenv("GOGC") == "" {
		// A serving daemon's heap is mostly pointer-free memory its
		// corpora allocate up front (a 64 MiB Badger memtable arena each,
		// mostly untouched) and filters: at the default GOGC of 100,
		// request garbage grows to as much again before a collection,
		// all of it resident, while marking those arenas costs nothing.
		// Serving 16.7M password hashes under load: 737 MiB RSS at 100,
		// 586 at 25, 543 at 10, at the same requests/s (a collection
		// marks little: a few per second under full load). GOGC in the
		// environment wins.
		debug.SetGCPercent(10)
	}
	ctx, stop := interrupt.Context() // a second Ctrl-C ends the process at once
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp), errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "breachd:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usage = `usage: breachd <command> [flags]

commands:
  serve    serve the corpus over gRPC
  import   add a breach dump to the corpus (directly, or through a running daemon)
  keys     create, list and revoke API keys
  breach   list the catalogue, delete a breach, or correct its catalogue entry (directly, or through a running daemon)
  replication takeover
           make this writer the one that publishes to NATS (serve's flags: --data, --publish)
  replication promote
           turn a stopped read replica's data directory into a writer's, its writer's disk lost (--data)
  rekey    key a corpus directory's email corpus with an index key (offline): it then holds no digest
  gc       collect what interrupted imports left in a corpus directory (a daemon does it at start)
  config   print the effective configuration of 'serve' (config print [serve's flags])

Run 'breachd <command> -h' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		c, err := parseServe(args[1:], stderr)
		if err != nil {
			return err
		}
		reload := func() (config, error) { return parseServe(args[1:], io.Discard) }
		return serve(ctx, c, reload, stdout, newLogger(stderr, c.logLevel(), true))
	case "keys":
		return keys(args[1:], stdout, stderr)
	case "breach":
		return breachCmd(ctx, args[1:], stdout, stderr, newLogger(stderr, slog.LevelWarn, false))
	case "replication":
		switch {
		case len(args) >= 2 && args[1] == "takeover":
			return takeover(ctx, args[2:], stdout, stderr, newLogger(stderr, slog.LevelWarn, false))
		case len(args) >= 2 && args[1] == "promote":
			return promote(args[2:], stdout, stderr)
		}
		fmt.Fprintln(stderr, "usage: breachd replication takeover --data DIR --publish NATS_URL [--config FILE]\n       breachd replication promote --data DIR")
		return errUsage
	case "gc":
		return gc(ctx, args[1:], stdout, stderr, newLogger(stderr, slog.LevelWarn, false))
	case "rekey":
		return rekey(ctx, args[1:], stdout, stderr, newLogger(stderr, slog.LevelWarn, false))
	case "config":
		if len(args) < 2 || args[1] != "print" {
			fmt.Fprintln(stderr, "usage: breachd config print [--config FILE] [serve's flags]")
			return errUsage
		}
		c, err := loadProcessConfig("breachd config print", args[2:], stderr)
		if err != nil {
			return err
		}
		// print is also for checking: validate everything (the data
		// directory may be left to a flag of the real command).
		check := c
		if check.Data == "" {
			check.Data = "unset"
		}
		if err := check.validate(); err != nil {
			return err
		}
		return c.print(stdout)
	case "import":
		c, err := parseImport(args[1:], stderr)
		if err != nil {
			return err
		}
		if c.kind != 0 {
			return importPasswords(ctx, c, stdout, newLogger(stderr, c.logLevel, false))
		}
		if c.pairs {
			return importPairs(ctx, c, stdout, newLogger(stderr, c.logLevel, false))
		}
		return importDump(ctx, c, stdout, newLogger(stderr, c.logLevel, false))
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "breachd: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

// newLogger returns JSON logs for the daemon and text logs for the CLI.
func newLogger(w io.Writer, level slog.Level, json bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if json {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// levelFlag parses --log-level.
type levelFlag struct{ l *slog.Level }

func (f levelFlag) String() string {
	if f.l == nil {
		return "info"
	}
	return strings.ToLower(f.l.String())
}
func (f levelFlag) Set(s string) error { return f.l.UnmarshalText([]byte(s)) }
