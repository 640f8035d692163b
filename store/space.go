package store

import (
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/breachd/breachd"
)

// Badger maps its files, so a write that finds the disk full is a SIGBUS
// that kills the process, not an error. The store therefore never lets
// Badger get there: before it writes anything for an import it checks that
// the filesystem keeps Options.DiskReserve free after what the write may
// need, and refuses with breachd.ErrNoSpace otherwise. Nothing is committed,
// lookups go on, and importing again after space is freed completes it.

// Per-digest space, estimated high from measurements (the 1.29M-digest
// corpus takes 72 MB on disk, 56 bytes a digest; write batches also pass
// through Badger's write-ahead memtable first).
const (
	bulkBytesPerKey  = 128
	batchBytesPerKey = 256
)

// freeBytes returns the space left to unprivileged writers on dir's filesystem.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// checkSpace refuses a write that needs about need bytes (plus room for
// Badger to flush two memtables) if the filesystem would keep less than the
// reserve.
func (c *corpus) checkSpace(need int64, what string) error {
	return checkSpace(c.dir, c.opts, need, what)
}

func checkSpace(dir string, o Options, need int64, what string) error {
	free, err := freeBytes(dir)
	if err != nil {
		return nil // cannot tell: let Badger try, as before
	}
	need += 2 * o.MemTableSize
	if free-need >= o.DiskReserve {
		return nil
	}
	return fmt.Errorf("%w: %s needs about %d MiB and %d MiB must stay free (reserve), but only %d MiB are free in %s; nothing was committed: free space and import again",
		breachd.ErrNoSpace, what, need>>20, o.DiskReserve>>20, free>>20, dir)
}

// lowOnSpace returns an error wrapping breachd.ErrNoSpace if dir's
// filesystem has less than reserve free, nil otherwise (or if it cannot
// tell, or dir does not exist yet: its parent is checked then).
func lowOnSpace(dir string, reserve int64) error {
	free, err := freeBytes(dir)
	if err != nil {
		if free, err = freeBytes(filepath.Dir(dir)); err != nil {
			return nil
		}
	}
	if free >= reserve {
		return nil
	}
	return fmt.Errorf("%w: only %d MiB are free in %s and %d MiB must stay free (reserve); the store is read-only until space is freed and it is opened again",
		breachd.ErrNoSpace, free>>20, dir, reserve>>20)
}
