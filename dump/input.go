package dump

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// Open opens the dump at path for reading, or standard input for "-"
// (Stdin), and returns its size in bytes: 0 for standard input, which
// has none to tell.
func Open(ctx context.Context, path string) (io.ReadCloser, int64, error) {
	if path == "-" {
		return Stdin(ctx), 0, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// Stdin returns standard input to read a dump from; once ctx is done its
// reads end with ctx's error. A read of a pipe whose writer is idle, or of
// a terminal, waits for ever: without this, Ctrl-C would wait with it
// (the signal cancels ctx, and the command then waits for its reader).
// Closing it leaves standard input open.
//
// On Linux a pipe or a terminal is opened afresh (/proc/self/fd), as a
// file of its own in non-blocking mode, which Go's poller can wake: the
// mode belongs to the open file, and standard input's is the shell's too.
// Anything else (a regular file, whose reads end; a socket; another
// system) is read as it is, ctx checked before each read.
func Stdin(ctx context.Context) io.ReadCloser {
	fd := -1
	if rc, err := os.Stdin.SyscallConn(); err == nil {
		rc.Control(func(s uintptr) { fd = int(s) })
	}
	return input(ctx, fd, os.Stdin)
}

// input is Stdin for descriptor fd, read through plain when it cannot be
// opened afresh.
func input(ctx context.Context, fd int, plain io.Reader) io.ReadCloser {
	f := reopen(fd)
	if f == nil {
		return io.NopCloser(&ctxReader{ctx: ctx, r: plain})
	}
	wake := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	return &wakeable{ctx: ctx, f: f, wake: wake}
}

// reopen opens descriptor fd afresh if it is a pipe or a terminal, in
// non-blocking mode and registered with the poller; nil otherwise.
func reopen(fd int) *os.File {
	if runtime.GOOS != "linux" || fd < 0 {
		return nil
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil
	}
	if t := st.Mode & syscall.S_IFMT; t != syscall.S_IFIFO && t != syscall.S_IFCHR {
		return nil
	}
	// O_NONBLOCK: a pipe's open for reading does not wait for a writer
	// (whose end may be closed already, its data still to read).
	nfd, err := syscall.Open("/proc/self/fd/"+strconv.Itoa(fd), syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(nfd), "/dev/stdin")
	// A descriptor the poller does not take (some devices) cannot be woken;
	// its reads might also fail with EAGAIN.
	if f.SetReadDeadline(time.Time{}) != nil {
		f.Close()
		return nil
	}
	return f
}

// wakeable reads a file opened afresh; once ctx is done, reads end with
// its error.
type wakeable struct {
	ctx  context.Context
	f    *os.File
	wake func() bool
}

func (w *wakeable) Read(p []byte) (int, error) {
	n, err := w.f.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && w.ctx.Err() != nil {
		err = w.ctx.Err()
	}
	return n, err
}

// Close closes the file opened afresh (standard input stays open).
func (w *wakeable) Close() error {
	w.wake()
	return w.f.Close()
}

// ctxReader reads r until ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
