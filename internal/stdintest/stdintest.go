package stdintest

import (
	"os"
	"testing"
)

// Pipe makes a pipe the process's standard input (os.Stdin) until the test
// ends, its read end in blocking mode as a shell leaves it, and returns its
// write end. Tests that call it must not run in parallel with others that
// read os.Stdin.
func Pipe(t testing.TB) (w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Fd() // blocking, as a shell leaves stdin
	old := os.Stdin
	os.Stdin = r
	t.Cleanup(func() {
		os.Stdin = old
		r.Close()
		w.Close()
	})
	return w
}
