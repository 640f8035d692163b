package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/dump"
	"github.com/breachd/breachd/service"
)

type importConfig struct {
	target
	manifest string
	format   dump.Format
	column   string
	batch    int
	dump     string
	logLevel slog.Level
	kind     breachd.HashKind // 0: an email breach dump
	pairs    bool             // --kind pairs: a combolist
	pwColumn string
	countPw  bool // --count-passwords
	pwFormat dump.PasswordFormat
	// maxInvalid is the share of rejected rows above which nothing is
	// committed (a misread dump); failOnInvalid commits nothing if any is.
	maxInvalid    float64
	failOnInvalid bool
}

func parseImport(args []string, stderr io.Writer) (importConfig, error) {
	fs := flag.NewFlagSet("breachd import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := importConfig{logLevel: slog.LevelWarn}
	var format, kind string
	c.target.register(fs)
	fs.StringVar(&c.manifest, "manifest", "", "breach (or password release) manifest, JSON (required)")
	fs.StringVar(&kind, "kind", "", "pairs: a combolist (each account with its password: the breach's accounts, and digests of the pairs); sha1 or ntlm: a password corpus of that kind instead of an email breach")
	fs.StringVar(&format, "format", "auto", "dump format: auto, csv, emails, sha256 or jsonl (one JSON object a line); with --kind pairs: auto, combo (email:password lines), csv, jsonl or pair-hashes (hex SHA-256 of the email:hex SHA-1 of the password); with --kind sha1|ntlm: hashes (HASH:COUNT lines, the default) or plain (one password a line, hashed as read)")
	fs.StringVar(&c.column, "column", "email", "CSV column (or JSON Lines field) holding the email address")
	fs.StringVar(&c.pwColumn, "password-column", "password", "with --kind pairs: CSV column (or JSON Lines field) holding the password")
	fs.BoolVar(&c.countPw, "count-passwords", false, "with --kind pairs: also count the passwords in the SHA-1 password corpus (which then holds each one's plain SHA-1, unlinked to any account)")
	fs.Float64Var(&c.maxInvalid, "max-invalid", 0.5, "commit nothing and fail when more than this share of rows is rejected (a misread dump), 0 to 1")
	fs.BoolVar(&c.failOnInvalid, "fail-on-invalid", false, "commit nothing and fail when any row is rejected")
	fs.IntVar(&c.batch, "batch", breachd.MaxBatch, fmt.Sprintf("digests per batch, 1 to %d", breachd.MaxBatch))
	fs.Var(levelFlag{&c.logLevel}, "log-level", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: breachd import (--data DIR | --addr unix://SOCKET|HOST:PORT) --manifest FILE DUMP\n"+
			"       breachd import --kind pairs (--data DIR | --addr unix://SOCKET|HOST:PORT) --manifest FILE COMBOLIST\n"+
			"       breachd import --kind sha1|ntlm (--data DIR | --addr unix://SOCKET|HOST:PORT) --manifest FILE HASHES\n\n"+
			"DUMP is a file or - for stdin: CSV, JSON Lines, one email a line, or hex digests; gzip, zstd,\n"+
			"bzip2, xz and UTF-16 are detected. HASHES is a file of HASH:COUNT lines, a directory of them\n"+
			"(per-prefix files named ABCDE.txt may hold SUFFIX:COUNT lines, as the Pwned Passwords\n"+
			"downloader writes them), or - for stdin. Flags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	// A flag that does not apply is refused, not ignored: a combolist
	// imported without --kind pairs would lose its passwords with no word.
	case (set["password-column"] || set["count-passwords"]) && kind != "pairs":
		fmt.Fprintln(stderr, "breachd import: --password-column and --count-passwords are for combolists: add --kind pairs")
		return c, errUsage
	case set["column"] && kind != "" && kind != "pairs":
		fmt.Fprintf(stderr, "breachd import: --column is for CSV dumps of accounts; a --kind %s dump has HASH:COUNT lines or passwords\n", kind)
		return c, errUsage
	}
	var err error
	if kind == "pairs" {
		c.pairs = true
		if c.format, err = dump.ParseFormat(format); err != nil || (c.format != dump.FormatAuto && c.format != dump.FormatCombo &&
			c.format != dump.FormatCSV && c.format != dump.FormatPairHashes) {
			fmt.Fprintf(stderr, "breachd import: invalid --format %s for --kind pairs: want auto, combo, csv or pair-hashes\n", format)
			return c, errUsage
		}
	} else if kind != "" {
		if c.kind, err = breachd.ParseHashKind(kind); err != nil {
			fmt.Fprintln(stderr, "breachd import: invalid --kind:", err)
			return c, errUsage
		}
		if format == "auto" {
			format = "hashes"
		}
		if c.pwFormat, err = dump.ParsePasswordFormat(format); err != nil {
			fmt.Fprintln(stderr, "breachd import:", err)
			return c, errUsage
		}
	} else if c.format, err = dump.ParseFormat(format); err != nil {
		fmt.Fprintln(stderr, "breachd import:", err)
		return c, errUsage
	}
	if !(c.maxInvalid >= 0 && c.maxInvalid <= 1) {
		fmt.Fprintf(stderr, "breachd import: invalid --max-invalid %v: want a share from 0 to 1\n", c.maxInvalid)
		return c, errUsage
	}
	if c.batch < 1 || c.batch > breachd.MaxBatch {
		fmt.Fprintf(stderr, "breachd import: invalid --batch %d: want 1 to %d\n", c.batch, breachd.MaxBatch)
		return c, errUsage
	}
	if why := c.misplaced(); why != "" {
		fmt.Fprintln(stderr, "breachd import:", why)
		return c, errUsage
	}
	if fs.NArg() != 1 || c.manifest == "" || !c.valid() {
		fs.Usage()
		return c, errUsage
	}
	c.dump = fs.Arg(0)
	return c, nil
}

// importer runs one import, into a local store (service.Service.Import) or
// through a daemon (client.Client.Import).
type importer func(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.Digest, error]) (breachd.ImportStats, error)

// rejectSamples is how many rejected rows the summary lists by line number.
const rejectSamples = 5

type rejected struct {
	line   int64
	reason string
}

// openImport reads an import's manifest and opens its dump (a file, or
// stdin for "-", whose reads end when ctx does).
func openImport(ctx context.Context, c importConfig) (breachd.Breach, io.ReadCloser, error) {
	b, err := dump.ReadManifest(c.manifest)
	if err != nil {
		return b, nil, err
	}
	f, _, err := dump.Open(ctx, c.dump)
	if err != nil && ctx.Err() != nil { // a FIFO's open waited for a writer
		return b, nil, interrupted(ctx, b.Name)
	}
	return b, f, err
}

// interrupted is the error of an import that ctx's end stopped.
func interrupted(ctx context.Context, name string) error {
	return fmt.Errorf("import of %s interrupted; nothing was made visible, run it again: %w", name, ctx.Err())
}

// keepRejects makes rd keep its first rejected rows (rejectSamples of them)
// for the summary and the errors.
func keepRejects(rd *dump.Reader) *[]rejected {
	var samples []rejected
	rd.OnReject = func(line int64, reason string) {
		if len(samples) < rejectSamples {
			samples = append(samples, rejected{line, reason})
		}
	}
	return &samples
}

// errNoRows ends an import whose dump gave no digest at all.
var errNoRows = errors.New("no row of the dump was accepted")

func importDump(ctx context.Context, c importConfig, stdout io.Writer, log *slog.Logger) error {
	start := time.Now()
	b, in, err := openImport(ctx, c)
	if err != nil {
		return err
	}
	defer in.Close()
	rd, err := dump.NewReader(in, dump.Options{Format: c.format, Column: c.column})
	if err != nil {
		if ctx.Err() != nil { // while it waited for the first rows
			return interrupted(ctx, b.Name)
		}
		return fmt.Errorf("%s: %w", c.dump, err)
	}
	defer rd.Close()
	samples := keepRejects(rd)

	var run importer
	if c.addr != "" {
		cl, conn, err := c.connect()
		if err != nil {
			return err
		}
		defer conn.Close()
		run = cl.Import
	} else {
		svc, done, err := c.service(ctx, log, false)
		if err != nil {
			return err
		}
		defer done()
		run = svc.Import
	}

	var readErr error // a failure of the dump itself, as opposed to the import
	batches := dumpBatches(c, rd.Read, rd.Stats, func() string { return sampleLines(*samples) }, &readErr)
	st, err := run(ctx, b, batches)
	switch {
	case errors.Is(err, errNoRows):
		return noRowsError(c, b.Name, rd, *samples)
	case errors.Is(err, client.ErrOutcomeUnknown):
		return fmt.Errorf("import of %s through %s: the connection failed after the commit was sent, so whether the breach was committed is unknown (%s).\n"+
			"Check with 'breachctl breaches --addr %s' (the breach is listed and the corpus version has grown if it was); importing again is safe, it is idempotent",
			b.Name, c.addr, client.Explain(err), c.addr)
	case err != nil && ctx.Err() != nil: // first: the dump's reads end with ctx too
		return interrupted(ctx, b.Name)
	case err != nil && readErr != nil:
		return fmt.Errorf("import of %s stopped; nothing was made visible: %w", b.Name, readErr)
	case err != nil:
		if c.addr != "" {
			err = c.remoteError(err)
		}
		return fmt.Errorf("import of %s failed; nothing was made visible: %w", b.Name, err)
	}
	elapsed := time.Since(start)
	log.Info("import finished", "breach", b.Name, "rows", rd.Stats().Rows, "duration", elapsed)
	printSummary(stdout, b.Name, c.dump, rd, st, *samples, elapsed)
	return nil
}

// noRowsError explains an import that accepted nothing, with the likely
// causes for the format that was read.
func noRowsError(c importConfig, name string, rd *dump.Reader, samples []rejected) error {
	rs := rd.Stats()
	var why strings.Builder
	fmt.Fprintf(&why, "import of %s: no row of %s was accepted (%d rows read as %s, %d rejected); nothing was committed",
		name, c.dump, rs.Rows, rd.Format(), rs.Rejected)
	for _, s := range samples {
		fmt.Fprintf(&why, "\n  rejected line %d: %s", s.line, s.reason)
	}
	switch {
	case rs.Rows == 0:
		why.WriteString("\nthe dump has no data rows: is it the right file?")
	case rd.Format() == dump.FormatEmails:
		fmt.Fprintf(&why, "\nif the dump is a CSV, its header needs a column named %q (--column), or pass --format csv or --format sha256", c.column)
	}
	return errors.New(why.String())
}

// dumpBatches yields the batches read reads from a dump (of any kind, into
// buffers of --batch items) until it ends. A failed read ends them with the
// error, kept in *readErr to tell a failure of the dump from one of the
// import. At the end, a dump from which no row was accepted (errNoRows),
// or whose rejected rows pass --max-invalid (or any with --fail-on-invalid),
// ends them with an error too: nothing is committed. samples lists the
// first rejected rows, for the message.
func dumpBatches[T any](c importConfig, read func([]T) ([]T, error), stats func() dump.Stats, samples func() string, readErr *error) iter.Seq2[[]T, error] {
	return func(yield func([]T, error) bool) {
		buf := make([]T, 0, c.batch)
		for {
			xs, err := read(buf)
			if len(xs) > 0 && !yield(xs, nil) {
				return
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				*readErr = fmt.Errorf("%s: %w", c.dump, err)
				yield(nil, *readErr)
				return
			}
		}
		rs := stats()
		switch {
		case rs.Accepted == 0:
			*readErr = errNoRows
		case c.failOnInvalid && rs.Rejected > 0:
			*readErr = fmt.Errorf("%s: %d of %d rows were rejected (--fail-on-invalid)", c.dump, rs.Rejected, rs.Rows)
		case float64(rs.Rejected) > c.maxInvalid*float64(rs.Rows):
			*readErr = fmt.Errorf("%s: %d of %d rows (%.1f%%) were rejected, more than --max-invalid %g: is the dump read the way it is written? (--format, --column)%s",
				c.dump, rs.Rejected, rs.Rows, 100*float64(rs.Rejected)/float64(rs.Rows), c.maxInvalid, samples())
		}
		if *readErr != nil {
			yield(nil, *readErr)
		}
	}
}

// sampleLines lists the first rejected rows, one a line.
func sampleLines(samples []rejected) string {
	var b strings.Builder
	for _, s := range samples {
		fmt.Fprintf(&b, "\n  rejected line %d: %s", s.line, s.reason)
	}
	return b.String()
}

func printSummary(w io.Writer, name, dump string, rd *dump.Reader, st breachd.ImportStats, samples []rejected, elapsed time.Duration) {
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

// importPairs imports a combolist: the breach's accounts into the email
// corpus and the digests of its pairs into the pair corpus, never a
// password (service.Service.ImportPairs).
func importPairs(ctx context.Context, c importConfig, stdout io.Writer, log *slog.Logger) error {
	start := time.Now()
	b, in, err := openImport(ctx, c)
	if err != nil {
		return err
	}
	defer in.Close()
	rd, err := dump.NewPairReader(in, dump.PairOptions{Format: c.format, Column: c.column, PasswordColumn: c.pwColumn})
	if err != nil {
		if ctx.Err() != nil {
			return interrupted(ctx, b.Name)
		}
		return fmt.Errorf("%s: %w", c.dump, err)
	}
	defer rd.Close()
	samples := keepRejects(rd)
	var run func(context.Context, breachd.Breach, iter.Seq2[[]breachd.PairRecord, error]) (breachd.PairImportStats, error)
	if c.addr != "" {
		cl, conn, err := c.connect()
		if err != nil {
			return err
		}
		defer conn.Close()
		run = func(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.PairRecord, error]) (breachd.PairImportStats, error) {
			return cl.ImportPairs(ctx, b, c.countPw, batches)
		}
	} else {
		svc, done, err := c.service(ctx, log, true)
		if err != nil {
			return err
		}
		defer done()
		var opts []service.PairOption
		if c.countPw {
			opts = append(opts, service.CountPasswords())
		}
		run = func(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.PairRecord, error]) (breachd.PairImportStats, error) {
			return svc.ImportPairs(ctx, b, batches, opts...)
		}
	}
	var readErr error
	batches := dumpBatches(c, rd.ReadPairs, rd.Stats, func() string { return sampleLines(*samples) }, &readErr)
	st, err := run(ctx, b, batches)
	if err != nil && c.addr != "" && readErr == nil && ctx.Err() == nil && !errors.Is(err, client.ErrOutcomeUnknown) {
		err = c.remoteError(err)
	}
	switch {
	case errors.Is(err, errNoRows):
		return noRowsError(c, b.Name, rd, *samples)
	case errors.Is(err, client.ErrOutcomeUnknown):
		return fmt.Errorf("import of %s through %s: the connection failed after the commit was sent, so whether the breach was committed is unknown (%s)",
			b.Name, c.addr, client.Explain(err))
	case err != nil && ctx.Err() != nil:
		return interrupted(ctx, b.Name)
	case err != nil && readErr != nil:
		return fmt.Errorf("import of %s stopped; nothing was made visible: %w", b.Name, readErr)
	case err != nil:
		return fmt.Errorf("import of %s failed; nothing was made visible: %w", b.Name, err)
	}
	elapsed := time.Since(start)
	log.Info("import finished", "breach", b.Name, "rows", rd.Stats().Rows, "duration", elapsed)
	rs := rd.Stats()
	fmt.Fprintf(stdout, "imported %s from %s (%s, pairs) in %s\n", b.Name, c.dump, rd.Format(), elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, r := range []struct {
		label string
		n     uint64
	}{{"rows read", uint64(rs.Rows)}, {"accepted", uint64(rs.Accepted)}, {"rejected", uint64(rs.Rejected)},
		{"pairs", st.Pairs}, {"accounts", st.Accounts}, {"corpus version", st.Version}} {
		fmt.Fprintf(tw, "  %s\t%d\t\n", r.label, r.n)
	}
	tw.Flush()
	for _, s := range *samples {
		fmt.Fprintf(stdout, "  rejected line %d: %s\n", s.line, s.reason)
	}
	return nil
}
