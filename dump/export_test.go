package dump

import (
	"context"
	"io"

	"github.com/breachd/breachd"
)

// SetBlockBytes sets the size of the blocks pr's lines are cut into, so
// that tests can put block edges anywhere.
func SetBlockBytes(pr *PasswordReader, n int) { pr.blockBytes = n }

// ReadSerial is Read on the caller's goroutine, line by line: the reading
// of a dump the tests hold Read's and the blocks' against.
func ReadSerial(r *Reader, dst []breachd.Digest) ([]breachd.Digest, error) {
	return readSerial(r, dst, r.parse)
}

// SetReadBlockBytes sets the size of the blocks r's Read cuts its dump
// into, so that tests can put block edges anywhere.
func SetReadBlockBytes(r *Reader, n int) { r.blockBytes = n }

// Input is Stdin for descriptor fd, read through plain when it cannot be
// opened afresh: for tests, which cannot give the process another stdin.
func Input(ctx context.Context, fd int, plain io.Reader) io.ReadCloser { return input(ctx, fd, plain) }
