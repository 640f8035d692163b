package store

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// Domain errors. The server maps them to gRPC codes in one place.
var (
	// ErrClosed is returned by every call on a closed store.
	ErrClosed = errors.New("store is closed")
	// ErrUnknownBreach is returned for a breach name that is not in the catalogue.
	ErrUnknownBreach = errors.New("unknown breach")
	// ErrLocked is returned by Open when another process holds the data directory.
	ErrLocked = errors.New("data directory is in use by another process")
	// ErrNoSpace is returned when the disk is full; nothing committed is lost.
	ErrNoSpace = errors.New("no space left on device")
	// ErrImportDone is returned by calls on an import that was committed or aborted.
	ErrImportDone = errors.New("import already finished")
	// ErrCorrupt is returned when stored data cannot be decoded.
	ErrCorrupt = errors.New("corrupt data")
)

// classify turns errors from Badger and the file system into domain errors,
// keeping the original text for the log.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.ENOSPC) || strings.Contains(msg, "no space left on device"):
		return fmt.Errorf("%s: %w (%v)", op, ErrNoSpace, err)
	case strings.Contains(msg, "Cannot acquire directory lock"):
		return fmt.Errorf("%s: %w", op, ErrLocked)
	}
	return fmt.Errorf("%s: %w", op, err)
}
