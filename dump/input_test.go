package dump_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/breachd/breachd/dump"
)

// within runs f and returns its error, and fails the test if f has not
// returned 10 s later (a read nothing woke).
func within(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting 10 s later")
		return nil
	}
}

// readWithin reads r to its end or error, within 10 s.
func readWithin(t *testing.T, r io.Reader) (got string, err error) {
	t.Helper()
	err = within(t, func() error {
		b, err := io.ReadAll(r)
		got = string(b)
		return err
	})
	return got, err
}

// TestStdin reads standard input's stand-ins: a pipe (what a shell's "|"
// gives) and a regular file (its "<"). A pipe whose writer is idle, the
// read that held up Ctrl-C, ends when the context does; data already in
// a pipe whose writer has gone is read to its end; the descriptor given
// keeps its blocking mode and stays open; a regular file is read as it is.
func TestStdin(t *testing.T) {
	t.Parallel()
	pipe := func(t *testing.T) (r, w *os.File, fd int) {
		t.Helper()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		return r, w, int(r.Fd()) // Fd: blocking, as a shell leaves stdin
	}
	// idle is a pipe no one writes to, read through Input with a context
	// cancelled 50 ms on.
	idle := func(t *testing.T) io.Reader {
		r, _, fd := pipe(t)
		ctx, cancel := context.WithCancel(context.Background())
		in := dump.Input(ctx, fd, r)
		t.Cleanup(func() { in.Close() })
		time.AfterFunc(50*time.Millisecond, cancel)
		return in
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"idle pipe, cancelled", func(t *testing.T) {
			if _, err := readWithin(t, idle(t)); !errors.Is(err, context.Canceled) {
				t.Fatalf("read = %v, want context.Canceled", err)
			}
		}},
		{"idle pipe under the dump reader, cancelled", func(t *testing.T) {
			in := idle(t)
			err := within(t, func() error {
				rd, err := dump.NewReader(in, dump.Options{}) // waits for the first bytes to detect the format
				if err == nil {
					rd.Close()
				}
				return err
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("NewReader = %v, want context.Canceled", err)
			}
		}},
		{"pipe read to its end", func(t *testing.T) {
			r, w, fd := pipe(t)
			in := dump.Input(context.Background(), fd, r)
			defer in.Close()
			go func() {
				w.Write([]byte("a@example.com\n"))
				time.Sleep(20 * time.Millisecond)
				w.Write([]byte("b@example.com\n"))
				w.Close()
			}()
			if got, err := readWithin(t, in); err != nil || got != "a@example.com\nb@example.com\n" {
				t.Fatalf("read %q, %v", got, err)
			}
		}},
		{"pipe whose writer has gone", func(t *testing.T) {
			r, w, fd := pipe(t)
			w.Write([]byte("left in the pipe\n"))
			w.Close()
			in := dump.Input(context.Background(), fd, r)
			defer in.Close()
			if got, err := readWithin(t, in); err != nil || got != "left in the pipe\n" {
				t.Fatalf("read %q, %v", got, err)
			}
		}},
		{"the descriptor keeps its mode and stays open", func(t *testing.T) {
			r, w, fd := pipe(t)
			ctx, cancel := context.WithCancel(context.Background())
			in := dump.Input(ctx, fd, r)
			cancel()
			in.Close()
			flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
			if errno != 0 || flags&syscall.O_NONBLOCK != 0 {
				t.Fatalf("the descriptor's flags %#x (errno %v): non-blocking", flags, errno)
			}
			w.Write([]byte("x"))
			var b [1]byte
			if n, err := r.Read(b[:]); n != 1 || err != nil {
				t.Fatalf("reading the descriptor after Close: %d, %v", n, err)
			}
		}},
		{"regular file, cancelled", func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "dump.txt")
			if err := os.WriteFile(name, []byte("a@example.com\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			ctx, cancel := context.WithCancel(context.Background())
			in := dump.Input(ctx, int(f.Fd()), f)
			defer in.Close()
			var b [4]byte
			if n, err := in.Read(b[:]); n != 4 || err != nil {
				t.Fatalf("read %d, %v", n, err)
			}
			cancel()
			if _, err := in.Read(b[:]); !errors.Is(err, context.Canceled) {
				t.Fatalf("read after cancel = %v, want context.Canceled", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// TestOpenFIFO opens named pipes by path, as "breachctl check --file
// FIFO" does: the open's wait for a writer and a read of an idle writer
// both end when the context does (both held up Ctrl-C before); a FIFO
// whose writer writes and leaves is read to its end.
func TestOpenFIFO(t *testing.T) {
	t.Parallel()
	fifo := func(t *testing.T) string {
		t.Helper()
		name := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(name, 0o600); err != nil {
			t.Fatal(err)
		}
		return name
	}
	// writer opens name for writing (which waits for a reader) and hands
	// the file over.
	writer := func(t *testing.T, name string) <-chan *os.File {
		t.Helper()
		ch := make(chan *os.File, 1)
		go func() {
			w, err := os.OpenFile(name, os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				close(ch)
				return
			}
			t.Cleanup(func() { w.Close() })
			ch <- w
		}()
		return ch
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"no writer, cancelled", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			name := fifo(t)
			err := within(t, func() error {
				in, _, err := dump.Open(ctx, name)
				if err == nil {
					in.Close()
				}
				return err
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Open = %v, want context.Canceled", err)
			}
			w := writer(t, name) // the abandoned open ends when a writer comes
			if got := <-w; got == nil {
				t.Fatal("no writer")
			}
		}},
		{"idle writer, cancelled", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			name := fifo(t)
			writer(t, name)
			in, size, err := dump.Open(ctx, name)
			if err != nil || size != 0 {
				t.Fatalf("Open = size %d, %v", size, err)
			}
			defer in.Close()
			time.AfterFunc(50*time.Millisecond, cancel)
			if _, err := readWithin(t, in); !errors.Is(err, context.Canceled) {
				t.Fatalf("read = %v, want context.Canceled", err)
			}
		}},
		{"read to its end", func(t *testing.T) {
			name := fifo(t)
			w := writer(t, name)
			go func() {
				f := <-w
				f.Write([]byte("a@example.com\n"))
				time.Sleep(20 * time.Millisecond)
				f.Write([]byte("b@example.com\n"))
				f.Close()
			}()
			in, _, err := dump.Open(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			if got, err := readWithin(t, in); err != nil || got != "a@example.com\nb@example.com\n" {
				t.Fatalf("read %q, %v", got, err)
			}
		}},
		{"regular file", func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "dump.txt")
			if err := os.WriteFile(name, []byte("a@example.com\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			in, size, err := dump.Open(context.Background(), name)
			if err != nil || size != 14 {
				t.Fatalf("Open = size %d, %v; want 14", size, err)
			}
			defer in.Close()
			if _, ok := in.(*os.File); !ok {
				t.Fatalf("a regular file is read as %T, want *os.File", in)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// TestLiveFeed: a pipe whose writer pauses is cut into blocks at the
// pause, marked Stalled, instead of waiting for a full block or the end;
// a file's blocks are full. The writer stays open throughout: a reader
// that waited to fill its block would not return (10 s).
func TestLiveFeed(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	in := dump.Input(context.Background(), int(r.Fd()), r)
	defer in.Close()
	w.WriteString("email\nalice@example.com\n")
	var rd *dump.Reader
	if err := within(t, func() (err error) { rd, err = dump.NewReader(in, dump.Options{}); return err }); err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	block := func(want ...string) {
		t.Helper()
		var b *dump.Block
		if err := within(t, func() (err error) { b, err = rd.ReadBlock(256 << 10); return err }); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, row := range rd.Rows(b, nil) {
			got = append(got, row.Value)
		}
		if !slices.Equal(got, want) || !b.Stalled() {
			t.Fatalf("block of %q (stalled %v), want %q, stalled", got, b.Stalled(), want)
		}
	}
	block("alice@example.com") // the row read with the header
	w.WriteString("bob@example.com\ncarol@exa")
	block("bob@example.com") // whole lines only
	w.WriteString("mple.com\ndave@example.com\n")
	block("carol@example.com", "dave@example.com")
	w.WriteString("erin@example.com\n")
	w.Close()
	var rows []string
	for {
		b, err := rd.ReadBlock(256 << 10)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rd.Rows(b, nil) {
			rows = append(rows, row.Value)
		}
	}
	if !slices.Equal(rows, []string{"erin@example.com"}) {
		t.Fatalf("after the writer closed: %q", rows)
	}

	// A file's blocks are as large as asked, never stalled.
	name := filepath.Join(t.TempDir(), "dump.txt")
	if err := os.WriteFile(name, []byte("email\na@example.com\nb@example.com\nc@example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, _, err := dump.Open(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	frd, err := dump.NewReader(f, dump.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer frd.Close()
	b, err := frd.ReadBlock(256 << 10)
	if err != nil || b.Stalled() || len(frd.Rows(b, nil)) != 3 {
		t.Fatalf("a file's first block: %v, stalled %v", err, b != nil && b.Stalled())
	}
}
