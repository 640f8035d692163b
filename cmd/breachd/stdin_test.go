package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
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
	for _, tc := range []struct {
		name    string
		args    []string // before the manifest and "-"
		list    []string // lists the corpus afterwards
		written string
	}{
		{"breach, before any row", []string{"import"}, []string{"breach", "list"}, ""},
		{"breach, after some rows", []string{"import"}, []string{"breach", "list"}, "email\nalice@example.com\nbob@example.com\n"},
		{"passwords, after some rows", []string{"import", "--kind", "sha1"}, []string{"breach", "list", "--kind", "sha1"},
			"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:3\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			stdintest.Pipe(t).WriteString(tc.written)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			args := append(append([]string{}, tc.args...), "--data", data, "--manifest", manifest, "-")
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
