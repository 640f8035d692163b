package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/dump"
)

// passwordImporter runs one password import, into a local corpus or
// through a daemon.
type passwordImporter func(ctx context.Context, rel breachd.Breach, expected uint64, batches iter.Seq2[[]breachd.PasswordRecord, error]) (breachd.PasswordImportStats, error)

// importPasswords imports a password release: 'breachd import --kind'.
func importPasswords(ctx context.Context, c importConfig, stdout io.Writer, log *slog.Logger) error {
	start := time.Now()
	rel, err := dump.ReadManifest(c.manifest)
	if err != nil {
		return err
	}
	rd, err := dump.NewPasswordReader(ctx, c.dump, nil, c.kind, c.pwFormat)
	if err != nil {
		if ctx.Err() != nil { // a FIFO's open waited for a writer
			return interrupted(ctx, rel.Name)
		}
		return err
	}
	defer rd.Close()
	var samples []string
	rd.OnReject = func(file string, line int64, reason string) {
		if len(samples) < rejectSamples {
			samples = append(samples, fmt.Sprintf("%s line %d: %s", filepath.Base(file), line, reason))
		}
	}
	var run passwordImporter
	if c.addr != "" {
		cl, conn, err := c.connect()
		if err != nil {
			return err
		}
		defer conn.Close()
		run = func(ctx context.Context, rel breachd.Breach, expected uint64, batches iter.Seq2[[]breachd.PasswordRecord, error]) (breachd.PasswordImportStats, error) {
			return cl.ImportPasswords(ctx, c.kind, rel, expected, batches)
		}
	} else {
		pw, err := c.openPasswords(ctx, c.kind, log)
		if err != nil {
			return err
		}
		defer closeOffline(ctx, pw, log)
		run = pw.Import
	}
	var readErr error
	batches := dumpBatches(c, rd.Read, rd.Stats, func() string {
		var b strings.Builder
		for _, s := range samples {
			b.WriteString("\n  rejected " + s)
		}
		return b.String()
	}, &readErr)
	st, err := run(ctx, rel, expectedHashes(c), batches)
	switch {
	case errors.Is(err, errNoRows):
		rs := rd.Stats()
		msg := fmt.Sprintf("import of %s: no line of %s was accepted (%d read, %d rejected); nothing was committed", rel.Name, c.dump, rs.Rows, rs.Rejected)
		for _, s := range samples {
			msg += "\n  rejected " + s
		}
		return errors.New(msg)
	case err != nil && ctx.Err() != nil: // first: the dump's reads end with ctx too
		return interrupted(ctx, rel.Name)
	case err != nil && readErr != nil:
		return fmt.Errorf("import of %s stopped; nothing was made visible: %w", rel.Name, readErr)
	case err != nil:
		if c.addr != "" {
			err = c.remoteError(err)
		}
		return fmt.Errorf("import of %s failed; nothing was made visible: %w", rel.Name, err)
	}
	elapsed := time.Since(start)
	rs := rd.Stats()
	log.Info("password import finished", "release", rel.Name, "kind", c.kind.String(), "rows", rs.Rows, "duration", elapsed)
	fmt.Fprintf(stdout, "imported %s release %s from %s in %s\n", c.kind, rel.Name, c.dump, elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, n uint64) { fmt.Fprintf(tw, "  %s\t%d\t\n", label, n) }
	row("lines read", uint64(rs.Rows))
	row("accepted", uint64(rs.Accepted))
	row("rejected", uint64(rs.Rejected))
	row("new hashes", st.NewHashes)
	row("updated hashes", st.UpdatedHashes)
	row("corpus version", st.Version)
	if secs := elapsed.Seconds(); secs > 0 {
		row("lines/s", uint64(float64(rs.Rows)/secs))
	}
	tw.Flush()
	for _, s := range samples {
		fmt.Fprintf(stdout, "  rejected %s\n", s)
	}
	if more := rs.Rejected - int64(len(samples)); more > 0 {
		fmt.Fprintf(stdout, "  ... and %d more rejected lines\n", more)
	}
	return nil
}

// expectedHashes estimates the hashes in the dump from its size, to size a
// first import's filter: a HASH:COUNT line is about 2*size+5 bytes.
func expectedHashes(c importConfig) uint64 {
	var total int64
	_ = filepath.WalkDir(c.dump, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	per := int64(2*c.kind.Size() + 5)
	if c.pwFormat == dump.PasswordPlain {
		per = 10
	}
	return uint64(total / per)
}
