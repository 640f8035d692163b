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

	"golang.org/x/sys/unix"

	"github.com/breachd/breachd/internal/interrupt"
)

// Open opens the dump at path for reading, or standard input for "-"
// (Stdin), and returns its size in bytes: 0 for standard input, which
// has none to tell. A named pipe (a FIFO) or a device is read as Stdin
// reads a pipe: once ctx is done its reads end with ctx's error, and so
// does the wait of a FIFO's open for its first writer.
func Open(ctx context.Context, path string) (io.ReadCloser, int64, error) {
	if path == "-" {
		return Stdin(ctx), 0, nil
	}
	f, err := interrupt.OpenFile(ctx, path, os.O_RDONLY, 0)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if fi.Mode().IsRegular() {
		return f, fi.Size(), nil
	}
	if w := wakeup(ctx, f); w != nil {
		return w, 0, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{&ctxReader{ctx: ctx, r: f}, f}, 0, nil
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
	if f := reopen(fd); f != nil {
		if w := wakeup(ctx, f); w != nil {
			return w
		}
		f.Close()
	}
	return io.NopCloser(&ctxReader{ctx: ctx, r: plain})
}

// wakeup returns f, whose reads end with ctx's error once ctx is done, if
// Go's poller takes f (a pipe, a terminal, not a regular file); nil if not.
// A descriptor the poller does not take (some devices) cannot be woken.
func wakeup(ctx context.Context, f *os.File) *wakeable {
	if f.SetReadDeadline(time.Time{}) != nil {
		return nil
	}
	wake := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	return &wakeable{ctx: ctx, f: f, wake: wake}
}

// reopen opens descriptor fd afresh if it is a pipe or a terminal, in
// non-blocking mode; nil otherwise.
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
	// A descriptor the poller does not take (some devices) cannot be woken
	// (wakeup); its reads might also fail with EAGAIN: the caller closes it.
	return os.NewFile(uintptr(nfd), "/dev/stdin")
}

// wakeable reads a pipe or a terminal; once ctx is done, reads end with
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

// Idle reports whether a read now would wait: nothing is there to read
// and a writer is (a pipe's writer that has gone is not idle: the read
// returns its end at once). It implements Idle.
func (w *wakeable) Idle() bool {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return false
	}
	idle := false
	rc.Control(func(fd uintptr) {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		idle = err == nil && n == 0
	})
	return idle
}

// Close closes the file (standard input, opened afresh, stays open).
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
