package dump

import "github.com/breachd/breachd"

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
