//go:build !unix

package store

import (
	"io"
	"os"
)

// mapFile reads f whole where there is no mmap: the index then costs
// anonymous memory.
func mapFile(f *os.File, size int64) ([]byte, error) {
	b := make([]byte, size)
	_, err := io.ReadFull(f, b)
	return b, err
}

func unmapFile([]byte) {}
