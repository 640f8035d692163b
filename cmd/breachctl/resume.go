package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/breachd/breachd/internal/atomicfile"
	"github.com/breachd/breachd/internal/interrupt"
)

// A resumable run keeps a checkpoint next to its report: how many input rows
// are done and how many report bytes they produced. It is written only after
// the report is flushed and synced, and replaced atomically, so after any
// interruption the report holds at least what the checkpoint says. Resuming
// truncates the report to the checkpoint's length and skips that many input
// rows: no row is lost and none is written twice.
type checkpoint struct {
	Fingerprint   string   `json:"fingerprint"` // the run's input and options
	OutBytes      int64    `json:"out_bytes"`
	Totals        counters `json:"totals"`
	CorpusVersion uint64   `json:"corpus_version"`
}

func checkpointPath(out string) string { return out + ".resume" }

// fingerprint identifies a run: the same input file (path, size, mtime) and
// the options that shape the report.
func fingerprint(c bulkConfig, size int64) (string, error) {
	abs, err := filepath.Abs(c.file)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(c.file)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%s\x00%v\x00%s\x00%v", abs, size, fi.ModTime().UnixNano(), c.column, c.digests, c.format, c.onlyExposed)
	if c.assess { // a report with other columns (kept out otherwise, so older checkpoints still match)
		fmt.Fprintf(h, "\x00assess %d", c.at)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// output is the report file (or stdout) with its checkpoint.
type output struct {
	f              *os.File    // nil for stdout
	unsynced       bool        // f is not a regular file: never fsync it
	stopWake       func() bool // ends the wake of f's writes at ctx's end (nil if none)
	cw             *countingWriter
	w              *bufio.Writer
	cpPath         string // "" when not resumable
	fp             string
	resumed        counters
	resumedVersion uint64 // the corpus version the resumed rows were answered at
}

// openOutput opens the report: stdout for "-", or c.out, resumed where
// its checkpoint says when c.resume. A report that is not a regular file
// (a named pipe, say) is written until ctx ends: its open, and a write
// its reader leaves waiting, end then.
func openOutput(ctx context.Context, c bulkConfig, inSize int64, stdout io.Writer) (*output, error) {
	if c.out == "-" {
		cw := &countingWriter{w: stdout}
		return &output{cw: cw, w: newBuffered(cw)}, nil
	}
	o := &output{}
	if c.resume {
		fp, err := fingerprint(c, inSize)
		if err != nil {
			return nil, err
		}
		o.fp, o.cpPath = fp, checkpointPath(c.out)
		if cp, err := readCheckpoint(o.cpPath); err == nil && cp.Fingerprint == fp {
			f, err := os.OpenFile(c.out, os.O_RDWR, 0)
			if err != nil {
				return nil, fmt.Errorf("resume: %w", err)
			}
			fi, err := f.Stat()
			if err == nil && fi.Size() < cp.OutBytes {
				err = fmt.Errorf("%s is shorter (%d bytes) than its checkpoint says (%d); delete %s to start over", c.out, fi.Size(), cp.OutBytes, o.cpPath)
			}
			if err == nil {
				err = f.Truncate(cp.OutBytes)
			}
			if err == nil {
				_, err = f.Seek(cp.OutBytes, io.SeekStart)
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("resume: %w", err)
			}
			o.f, o.resumed, o.resumedVersion = f, cp.Totals, cp.CorpusVersion
			o.cw = &countingWriter{w: f, n: cp.OutBytes}
			o.w = newBuffered(o.cw)
			return o, nil
		} else if err == nil {
			return nil, fmt.Errorf("%s belongs to a run with other input or options; delete it to start over", o.cpPath)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("resume: %w", err)
		}
	}
	f, err := interrupt.OpenFile(ctx, c.out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		return nil, err
	}
	o.f = f
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		o.unsynced = true // /dev/null, a pipe: fsync fails with EINVAL and means nothing
		// A pipe's writes wait for its reader; once ctx ends they fail
		// at once (os.File puts a pipe in Go's poller, so a deadline
		// wakes them), the flush at close included.
		o.stopWake = context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	}
	o.cw = &countingWriter{w: f}
	o.w = newBuffered(o.cw)
	return o, nil
}

func readCheckpoint(path string) (checkpoint, error) {
	var cp checkpoint
	b, err := os.ReadFile(path)
	if err != nil {
		return cp, err
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		return cp, fmt.Errorf("%s: %w", path, err)
	}
	return cp, nil
}

// checkpoint makes the report durable up to now and records it.
func (o *output) checkpoint(tot counters, version uint64) error {
	if err := o.w.Flush(); err != nil {
		return err
	}
	if o.f == nil || o.cpPath == "" {
		return nil
	}
	if err := o.sync(); err != nil {
		return err
	}
	b, err := json.Marshal(checkpoint{Fingerprint: o.fp, OutBytes: o.cw.n, Totals: tot, CorpusVersion: version})
	if err != nil {
		return err
	}
	// Synced with its directory: a checkpoint that a power loss could
	// undo would resume from rows the report no longer holds.
	return atomicfile.WriteFile(o.cpPath, b, 0o600)
}

// finish flushes the report and removes the checkpoint: the run is complete.
func (o *output) finish() error {
	if err := o.w.Flush(); err != nil {
		return err
	}
	if err := o.sync(); err != nil {
		return err
	}
	if o.cpPath != "" {
		if err := os.Remove(o.cpPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// sync makes the report durable, if it is a file.
func (o *output) sync() error {
	if o.f == nil || o.unsynced {
		return nil
	}
	return o.f.Sync()
}

// close flushes what is buffered (an interrupted run keeps its rows up to the
// last checkpoint either way) and closes the file.
func (o *output) close() {
	o.w.Flush()
	if o.stopWake != nil {
		o.stopWake()
	}
	if o.f != nil {
		o.f.Close()
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
