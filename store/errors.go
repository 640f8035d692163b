package store

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/breachd/breachd"
)

// Errors of the store itself; the use cases see breachd's kinds.
var (
	// ErrLocked is returned by Open when another process holds the data directory.
	ErrLocked = breachd.NewError(breachd.ErrFailedPrecondition, "data directory is in use by another process")
	// ErrCorrupt is returned when stored data cannot be decoded. It has no
	// kind: adapters treat it as internal.
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
		return fmt.Errorf("%s: %w (%v)", op, breachd.ErrNoSpace, err)
	case strings.Contains(msg, "Cannot acquire directory lock"):
		return fmt.Errorf("%s: %w", op, ErrLocked)
	}
	return fmt.Errorf("%s: %w", op, err)
}
