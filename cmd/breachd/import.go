package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/corpus"
	"github.com/breachd/breachd/store"
)

type importConfig struct {
	data     string
	addr     string
	manifest string
	format   corpus.Format
	column   string
	batch    int
	dump     string
	logLevel slog.Level
}

func parseImport(args []string, stderr io.Writer) (importConfig, error) {
	fs := flag.NewFlagSet("breachd import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := importConfig{logLevel: slog.LevelWarn}
	var format string
	fs.StringVar(&c.data, "data", "", "corpus directory to import into directly (the daemon must not be running on it)")
	fs.StringVar(&c.addr, "addr", "", "address of a running daemon to import through, e.g. 127.0.0.1:7355")
	fs.StringVar(&c.manifest, "manifest", "", "breach manifest, JSON (required)")
	fs.StringVar(&format, "format", "auto", "dump format: auto, csv, emails or sha256")
	fs.StringVar(&c.column, "column", "email", "CSV column holding the email address")
	fs.IntVar(&c.batch, "batch", 10_000, "digests per write batch (at most 10000 through a daemon)")
	fs.Var(levelFlag{&c.logLevel}, "log-level", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: breachd import (--data DIR | --addr HOST:PORT) --manifest FILE DUMP\n\nDUMP is a file or - for stdin; gzip is detected. Flags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var err error
	if c.format, err = corpus.ParseFormat(format); err != nil {
		fmt.Fprintln(stderr, "breachd import:", err)
		return c, errUsage
	}
	if fs.NArg() != 1 || c.manifest == "" || (c.data == "") == (c.addr == "") || c.batch < 1 {
		fs.Usage()
		return c, errUsage
	}
	c.dump = fs.Arg(0)
	return c, nil
}

// importSession is one breach import, into a local store or through a daemon.
type importSession interface {
	Add(ctx context.Context, digests []breachd.Digest) error
	Commit(ctx context.Context) (store.ImportStats, error)
	Abort()
}

// rejectSamples is how many rejected rows the summary lists by line number.
const rejectSamples = 5

type rejected struct {
	line   int64
	reason string
}

func importDump(ctx context.Context, c importConfig, stdout io.Writer, log *slog.Logger) error {
	start := time.Now()
	b, err := corpus.ReadManifest(c.manifest)
	if err != nil {
		return err
	}
	in := io.Reader(os.Stdin)
	if c.dump != "-" {
		f, err := os.Open(c.dump)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	rd, err := corpus.NewReader(in, corpus.Options{Format: c.format, Column: c.column})
	if err != nil {
		return fmt.Errorf("%s: %w", c.dump, err)
	}
	var samples []rejected
	rd.OnReject = func(line int64, reason string) {
		if len(samples) < rejectSamples {
			samples = append(samples, rejected{line, reason})
		}
	}

	var sess importSession
	if c.addr != "" {
		rs, err := beginRemote(ctx, c.addr, b, c.batch)
		if err != nil {
			return err
		}
		sess = rs
	} else {
		st, err := store.Open(c.data, store.Options{Logger: log})
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("%s is in use by a running daemon: import through it with --addr instead of --data", c.data)
		}
		if err != nil {
			return err
		}
		defer st.Close()
		imp, err := st.BeginImport(ctx, b)
		if err != nil {
			return err
		}
		sess = imp
	}
	defer sess.Abort() // no-op after a commit

	buf := make([]breachd.Digest, 0, c.batch)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("import of %s interrupted; nothing was made visible, run it again: %w", b.Name, err)
		}
		ds, err := rd.Read(buf)
		if len(ds) > 0 {
			if err := sess.Add(ctx, ds); err != nil {
				return fmt.Errorf("import of %s failed; nothing was made visible: %w", b.Name, err)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.dump, err)
		}
	}
	st, err := sess.Commit(ctx)
	if err != nil {
		return fmt.Errorf("import of %s failed at commit; nothing was made visible: %w", b.Name, err)
	}
	elapsed := time.Since(start)
	log.Info("import finished", "breach", b.Name, "rows", rd.Stats().Rows, "duration", elapsed)
	printSummary(stdout, b.Name, c.dump, rd, st, samples, elapsed)
	return nil
}

func printSummary(w io.Writer, name, dump string, rd *corpus.Reader, st store.ImportStats, samples []rejected, elapsed time.Duration) {
	rs := rd.Stats()
	fmt.Fprintf(w, "imported %s from %s (%s) in %s\n", name, dump, rd.Format(), elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, n int64) { fmt.Fprintf(tw, "  %s\t%d\t\n", label, n) }
	row("rows read", rs.Rows)
	row("accepted", rs.Accepted)
	row("rejected", rs.Rejected)
	row("duplicates", int64(st.Duplicates))
	row("new accounts", int64(st.NewAccounts))
	row("known accounts", int64(st.KnownAccounts))
	row("corpus version", int64(st.Version))
	if secs := elapsed.Seconds(); secs > 0 {
		row("rows/s", int64(float64(rs.Rows)/secs))
	}
	tw.Flush()
	for _, s := range samples {
		fmt.Fprintf(w, "  rejected line %d: %s\n", s.line, s.reason)
	}
	if more := rs.Rejected - int64(len(samples)); more > 0 {
		fmt.Fprintf(w, "  ... and %d more rejected rows\n", more)
	}
}
