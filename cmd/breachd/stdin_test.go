package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/breachd/breachd/internal/stdintest"
)

// TestImportStdinInterrupted: an import reading its dump from stdin ("-")
// stops when interrupted, also while the pipe is idle, says it was
// interrupted, and makes nothing visible. Ctrl-C used to wait for the
// pipe's next bytes. Not parallel: it gives the process another stdin.
func TestImportStdinInterrupted(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "m.json")
	if err := os.WriteFile(manifest, []byte(`{"Name":"Piped","Title":"Piped"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	const (
		stdin        = iota
		fifo         // a named pipe given by path, its writer idle
		fifoNoWriter // a named pipe no one opened for writing
	)
	for _, tc := range []struct {
		name    string
		args    []string // before the manifest and "-"
		list    []string // lists the corpus afterwards
		written string
		source  int
	}{
		{"breach, before any row", []string{"import"}, []string{"breach", "list"}, "", stdin},
		{"breach, after some rows", []string{"import"}, []string{"breach", "list"}, "email\nalice@example.com\nbob@example.com\n", stdin},
		{"passwords, after some rows", []string{"import", "--kind", "sha1"}, []string{"breach", "list", "--kind", "sha1"},
			"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:3\n", stdin},
		{"breach from a FIFO, after some rows", []string{"import"}, []string{"breach", "list"}, "email\nalice@example.com\n", fifo},
		{"breach from a FIFO without a writer", []string{"import"}, []string{"breach", "list"}, "", fifoNoWriter},
		{"passwords from a FIFO, after some rows", []string{"import", "--kind", "sha1"}, []string{"breach", "list", "--kind", "sha1"},
			"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:3\n", fifo},
		{"passwords from a FIFO without a writer", []string{"import", "--kind", "sha1"}, []string{"breach", "list", "--kind", "sha1"}, "", fifoNoWriter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			from := "-"
			if tc.source == stdin {
				stdintest.Pipe(t).WriteString(tc.written)
			} else {
				from = mkfifo(t, t.TempDir())
			}
			if tc.source == fifo {
				feed(t, from, tc.written, true)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			args := append(append([]string{}, tc.args...), "--data", data, "--manifest", manifest, from)
			go func() { done <- run(ctx, args, &bytes.Buffer{}, &bytes.Buffer{}) }()
			time.Sleep(300 * time.Millisecond)
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted; nothing was made visible") {
					t.Fatalf("import = %v, want it interrupted", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the import still runs 10 s after it was interrupted")
			}
			if _, err := os.Stat(data); errors.Is(err, os.ErrNotExist) {
				return // stopped before it opened a corpus: nothing to see
			}
			if out := runOK(t, append(tc.list, "--data", data)...); strings.Contains(out, "Piped") {
				t.Fatalf("after the interrupted import the corpus lists:\n%s", out)
			}
		})
	}
}

// TestImportFromFIFO: breach and password imports read a named pipe given
// by path to its end, as they read a file.
func TestImportFromFIFO(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	manifest := filepath.Join(dir, "m.json")
	if err := os.WriteFile(manifest, []byte(`{"Name":"Piped","Title":"Piped"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		args    []string
		list    []string
		written string
	}{
		{[]string{"import"}, []string{"breach", "list"}, "email\nalice@example.com\nbob@example.com\n"},
		{[]string{"import", "--kind", "sha1"}, []string{"breach", "list", "--kind", "sha1"},
			"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:3\n7C4A8D09CA3762AF61E59520943DC26494F8941B:2\n"},
	} {
		data := filepath.Join(dir, fmt.Sprint("data", i))
		from := mkfifo(t, t.TempDir())
		feed(t, from, tc.written, false)
		runOK(t, append(tc.args, "--data", data, "--manifest", manifest, from)...)
		if out := runOK(t, append(tc.list, "--data", data)...); !strings.HasPrefix(out, "Piped\t2\t") {
			t.Fatalf("after an import of 2 rows from a FIFO the corpus lists:\n%s", out)
		}
	}
}

// mkfifo makes a named pipe in dir.
func mkfifo(t *testing.T, dir string) string {
	t.Helper()
	name := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(name, 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// feed opens the FIFO name for writing, once a reader opens it, and writes
// text; then it closes it, or with idle keeps it open until the test ends.
func feed(t *testing.T, name, text string, idle bool) {
	go func() {
		w, err := os.OpenFile(name, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		w.WriteString(text)
		if !idle {
			w.Close()
			return
		}
		t.Cleanup(func() { w.Close() })
	}()
}
