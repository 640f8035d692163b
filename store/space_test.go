package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store/storetest"
)

// TestDiskFull fills a real (tmpfs) filesystem under an import: the import
// is refused with ErrNoSpace before Badger can run out of space (which would
// kill the process), nothing of it becomes visible, lookups go on, and after
// space is freed importing again reaches the exact counts.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=40m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	o := options(4096)
	o.MemTableSize, o.DiskReserve = 2<<20, 4<<20
	data := filepath.Join(dir, "data")
	s := open(t, data, o)
	defer s.Close()
	a, b := storetest.Digests("a", 60_000), storetest.Digests("b", 60_000)
	importAll(t, s, storetest.Breach("Alpha"), a, 10_000)

	// Leave about 10 MiB: not enough for Beta's 60,000 digests in batches.
	ballast := filepath.Join(dir, "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	syscall.Statfs(dir, &st)
	if err := f.Truncate(int64(st.Bavail)*int64(st.Bsize) - 10<<20); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*int64(st.Bsize)-10<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()

	_, err = s.Import(context.Background(), storetest.Breach("Beta"), storetest.Batches(b, 5000, nil))
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
}
