package interrupt

import (
	"context"
	"os"
)

// OpenFile is os.OpenFile, except that when name is a named pipe, whose
// open waits for a process to open its other end, it stops waiting when
// ctx ends (with ctx's error): the open runs on a goroutine of its own.
// That goroutine ends with the open: when the other end comes (it then
// closes the file), or with the process, which is on its way out once ctx
// has ended.
func OpenFile(ctx context.Context, name string, flag int, perm os.FileMode) (*os.File, error) {
	if fi, err := os.Stat(name); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return os.OpenFile(name, flag, perm)
	}
	type opened struct {
		f   *os.File
		err error
	}
	done := make(chan opened, 1)
	go func() {
		f, err := os.OpenFile(name, flag, perm)
		done <- opened{f, err}
	}()
	select {
	case o := <-done:
		return o.f, o.err
	case <-ctx.Done():
		go func() {
			if o := <-done; o.f != nil {
				o.f.Close()
			}
		}()
		return nil, ctx.Err()
	}
}
