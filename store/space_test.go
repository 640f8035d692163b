package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/store/storetest"
)

// TestDiskFull fills a real (tmpfs) filesystem under an import: the import
// is refused with ErrNoSpace before Badger can run out of space (which would
// kill the process), nothing of it becomes visible, lookups go on, and after
// space is freed importing again reaches the exact counts. On a full disk
// the store opens read-only and serves; filled while it serves, it answers,
// refuses writes, and closes without a crash or a loss.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=40m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	// MNT_DETACH: the last part leaves a store open on it (see below).
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	o := options(4096)
	o.MemTableSize, o.DiskReserve = 2<<20, 4<<20
	data := filepath.Join(dir, "data")
	s := open(t, data, o)

	a, b := storetest.Digests("a", 60_000), storetest.Digests("b", 60_000)
	importAll(t, s, storetest.Breach("Alpha"), a, 10_000)

	// Leave about 10 MiB: not enough for Beta's 60,000 digests in batches.
	ballast := filepath.Join(dir, "ballast")
	fill(t, ballast, dir, 10<<20)

	_, err := s.Import(context.Background(), storetest.Breach("Beta"), storetest.Batches(b, 5000, nil))
	if !errors.Is(err, breachd.ErrNoSpace) {
		t.Fatalf("import into a nearly full filesystem = %v, want ErrNoSpace", err)
	}
	t.Logf("refused: %v", err)
	wantBreaches(t, s, a[:2000], "Alpha")
	wantBreaches(t, s, b[:2000])
	if v := s.Version(); v != 1 {
		t.Fatalf("corpus version %d after the refused import, want 1", v)
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	st2 := importAll(t, s, storetest.Breach("Beta"), b, 5000)
	if st2.NewAccounts != 60_000 || st2.Version != 2 {
		t.Fatalf("import after freeing space = %+v, want 60000 new accounts at version 2", st2)
	}
	wantBreaches(t, s, b, "Beta")
	wantBreaches(t, s, a, "Alpha")

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fill(t, ballast, dir, 0)

	// Opening on the full disk: read-only, serving exact answers, refusing
	// every write with ErrNoSpace.
	s = open(t, data, o)
	if err := s.ReadOnly(); !errors.Is(err, breachd.ErrNoSpace) {
		t.Fatalf("ReadOnly() on a full disk = %v, want ErrNoSpace", err)
	}
	t.Logf("opened read-only: %v", s.ReadOnly())
	wantBreaches(t, s, a, "Alpha")
	wantBreaches(t, s, b, "Beta")
	wantBreaches(t, s, storetest.Digests("outsider", 2000))
	if _, _, err := s.DeleteBreach(context.Background(), "Beta"); !errors.Is(err, breachd.ErrNoSpace) {
		t.Fatalf("delete on a read-only store = %v, want ErrNoSpace", err)
	}
	if _, err := s.Collect(context.Background()); !errors.Is(err, breachd.ErrNoSpace) {
		t.Fatalf("collect on a read-only store = %v, want ErrNoSpace", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("closing the read-only store: %v", err)
	}

	// Space freed: it opens writable again and takes imports.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	s = open(t, data, o)
	if err := s.ReadOnly(); err != nil {
		t.Fatalf("ReadOnly() after freeing space = %v", err)
	}
	if st := importAll(t, s, storetest.Breach("Gamma"), storetest.Digests("c", 1000), 500); st.NewAccounts != 1000 || st.Version != 3 {
		t.Fatalf("import after freeing space = %+v, want 1000 new accounts at version 3", st)
	}
	wantBreaches(t, s, a, "Alpha")
	// Gamma's rows are compacted into the index file in the background:
	// done before the disk is filled, which it would race.
	waitCompacted(t, s, &logtest.Buffer{})

	// Something else fills the disk to the last byte while the store serves:
	// lookups go on, writes are refused.
	fill(t, ballast, dir, 0)
	wantBreaches(t, s, a[:5000], "Alpha")
	if _, err := s.Import(context.Background(), storetest.Breach("Gamma"), storetest.Batches(a[:10], 10, nil)); !errors.Is(err, breachd.ErrNoSpace) {
		t.Fatalf("import on a full disk = %v, want ErrNoSpace", err)
	}
	// Closing would flush Badger's memtable (Gamma's rows) into the full
	// disk through a memory map, a SIGBUS: Close leaves the write-ahead log
	// instead, and says so.
	if err := s.Close(); !errors.Is(err, breachd.ErrNoSpace) {
		t.Fatalf("close on a full disk = %v, want ErrNoSpace", err)
	}

	// Nothing is lost: a copy of the directory (this process still holds
	// the original's lock) opens, once there is room, with Gamma in it.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy")
	copyDir(t, data, cp)
	s = open(t, cp, o)
	defer s.Close()
	wantBreaches(t, s, storetest.Digests("c", 1000), "Gamma")
	wantBreaches(t, s, a, "Alpha")
}

// fill makes the file ballast take all but leave bytes of dir's filesystem.
func fill(t *testing.T, ballast, dir string, leave int64) {
	t.Helper()
	f, err := os.OpenFile(ballast, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	var st syscall.Statfs_t
	syscall.Statfs(dir, &st)
	size := fi.Size() + int64(st.Bavail)*int64(st.Bsize) - leave
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		t.Fatalf("filling %s: %v", dir, err)
	}
}

// TestCloseWithoutDataDir: a corpus whose directory was removed or replaced
// while it was open closes with an error naming the directory. Badger's
// own Close would retry its memtable flush into the missing directory
// every second, for ever (dgraph-io/badger#664): a daemon told to stop
// hung.
func TestCloseWithoutDataDir(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"removed", "replaced"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "emails")
			s := open(t, dir, options(0))
			importAll(t, s, storetest.Breach("A"), storetest.Digests("a", 1000), 1000)
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
			if how == "replaced" {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case err := <-closed:
				if err == nil || !strings.Contains(err.Error(), dir) {
					t.Fatalf("Close = %v; want an error naming %s", err, dir)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Close hangs")
			}
		})
	}
}
