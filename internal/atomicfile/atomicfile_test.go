package atomicfile_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/breachd/breachd/internal/atomicfile"
)

// TestReplace: a committed replacement is in place with its permissions
// and leaves no temporary file; an aborted one, or one whose writer
// fails, leaves the old file untouched and no temporary file.
func TestReplace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	if err := atomicfile.WriteFile(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := atomicfile.Create(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("two, half written"))
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("before Commit the file reads %q, want the old contents", b)
	}
	f.Abort()
	if err := atomicfile.Write(path, 0o600, func(w io.Writer) error { w.Write([]byte("three")); return errors.New("source failed") }); err == nil {
		t.Fatal("Write with a failing writer = nil")
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("after an abort and a failed write the file reads %q, want %q", b, "one")
	}
	renamed := false
	if err := atomicfile.Write(path, 0o640, func(w io.Writer) error { _, err := w.Write([]byte("four")); return err },
		atomicfile.AfterRename(func() { renamed = true })); err != nil || !renamed {
		t.Fatalf("Write = %v, hook called %v", err, renamed)
	}
	b, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(b) != "four" || fi.Mode().Perm() != 0o640 {
		t.Fatalf("after Commit: %q, mode %v; want %q, 0640", b, fi.Mode().Perm(), "four")
	}
	if tmps, _ := filepath.Glob(path + ".tmp*"); len(tmps) != 0 {
		t.Fatalf("temporary files left: %v", tmps)
	}
}
