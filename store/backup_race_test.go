package store_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// TestBackupsDuringImport: deltas taken while an import writes its rows
// (the publisher does not wait for imports) bring every row of it to a
// replica, whichever delta carries which: after the commit's delta, the
// replica answers every account of the breach. Deltas taken beside the
// writes lost rows (a few hundred of 30,000, one run in three) until a
// backup's Upto was the read timestamp its stream began at rather than the
// highest version it streamed.
func TestBackupsDuringImport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := open(t, t.TempDir(), options(1000))
	defer w.Close()
	fo := options(1000) // small: the replica's filter is rebuilt while the import's rows arrive
	fo.Follower = true
	r := open(t, t.TempDir(), fo)
	defer r.Close()
	importAll(t, w, storetest.Breach("Base"), storetest.Digests("base", 2000), 500)

	ship := shipper(t, func() backupCorpus { return w }, func() applyCorpus { return r })
	ship()
	ds := storetest.Digests("slow", 20000)
	batches := func(yield func([]breachd.Digest, error) bool) {
		for lo := 0; lo < len(ds); lo += 1000 {
			if !yield(ds[lo:lo+1000], nil) {
				return
			}
			ship() // a delta between two batches of the running import
		}
	}
	if _, err := w.Import(ctx, storetest.Breach("Slow"), batches); err != nil {
		t.Fatal(err)
	}
	ship()

	// Deltas taken while the rows are being written (the publisher runs
	// beside imports): a backup's stream reads its key ranges in several
	// transactions, begun one after the other.
	ds2 := storetest.Digests("concurrent", 30000)
	stop := make(chan struct{})
	shipped := make(chan struct{})
	go func() {
		defer close(shipped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			ship()
		}
	}()
	if _, err := w.Import(ctx, storetest.Breach("Concurrent"), storetest.Batches(ds2, 500, nil)); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-shipped
	ship()
	ds = append(ds, ds2...)
	missing := 0
	for _, d := range ds {
		bs, _, err := r.Lookup(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 1 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d accounts of an import shipped across deltas answer no breach on the replica", missing, len(ds))
	}
}

// shipper returns a function that takes a backup of the writer w() returns
// since the last one and applies it to the replica replica() returns, as a
// publisher and a follower do (either may be reopened between calls).
func shipper(tb testing.TB, w func() backupCorpus, replica func() applyCorpus) func() {
	var since uint64
	return func() {
		tb.Helper()
		ctx := context.Background()
		var buf bytes.Buffer
		info, err := w().Backup(ctx, &buf, since)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := replica().ApplyBackup(ctx, bytes.NewReader(buf.Bytes()), info.Keys); err != nil {
			tb.Fatal(err)
		}
		since = info.Upto
	}
}

// backupCorpus is a corpus that writes backups, applyCorpus one that
// applies them: Store and Passwords are both.
type (
	backupCorpus interface {
		Backup(ctx context.Context, w io.Writer, since uint64) (store.BackupInfo, error)
	}
	applyCorpus interface {
		ApplyBackup(ctx context.Context, r io.Reader, expectedKeys uint64) (uint64, error)
	}
)

// TestReplicaRestartBetweenDeltas: a replica restarted between a delta that
// brought rows of an import not yet committed (at the same corpus version)
// and the delta that commits it answers every account of that import. It
// trusted the index it had saved before the first delta, and the
// committing delta does not bring those rows again.
func TestReplicaRestartBetweenDeltas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := open(t, t.TempDir(), options(0))
	defer w.Close()
	fo := options(0)
	fo.Follower, fo.Index = true, store.IndexInline
	rdir := t.TempDir()
	r := open(t, rdir, fo)
	ship := shipper(t, func() backupCorpus { return w }, func() applyCorpus { return r }) // r is reopened below
	importAll(t, w, storetest.Breach("Base"), storetest.Digests("base", 1000), 500)
	ship()
	ds := storetest.Digests("x", 2000)
	batches := func(yield func([]breachd.Digest, error) bool) {
		if !yield(ds[:1000], nil) {
			return
		}
		ship() // the rows so far, at version 1
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		r = open(t, rdir, fo)
		yield(ds[1000:], nil)
	}
	if _, err := w.Import(ctx, storetest.Breach("X"), batches); err != nil {
		t.Fatal(err)
	}
	ship()
	defer r.Close()
	missing := 0
	for _, d := range ds {
		bs, _, err := r.Lookup(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 1 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d accounts of X answer no breach on the replica restarted between its deltas", missing, len(ds))
	}
}
