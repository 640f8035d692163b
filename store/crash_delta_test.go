package store_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// The crash harness for replication deltas. A writer whose last delta a
// replica applied deletes breach Beta, Badger compacts everything, and the
// writer streams its next delta and records its Upto, as the publisher
// does; the child is SIGKILLed at a point drawn from the delete's commit,
// its collection, the stream and the record Backup keeps after it. The
// writer then restarts as a published corpus, finishes the delete if it
// was not committed, imports breach Gamma (commits after a restart must
// get versions above every Upto handed out), compacts again, and ships a
// delta from the last Upto recorded: the replica must then answer exactly
// as the writer does, Beta gone and Gamma there. Before the hold and the
// record, a compacted delete never reached the replica.

var crashDeltaPoints = []string{"delete-committed:1", "collect-row:1", "collect-row:800", "backup-streamed:1", "backup-shipped:1"}

// The template's breaches: Alpha, and Beta, which shares 300 of Alpha's
// accounts; Gamma is imported after the kill.
func crashDeltaDigests(name string) []breachd.Digest {
	switch name {
	case "Alpha":
		return storetest.Digests("alpha", 3000)
	case "Beta":
		return append(storetest.Digests("beta", 2000), storetest.Digests("alpha", 300)...)
	default:
		return storetest.Digests("gamma", 1000)
	}
}

// crashDeltaWork is the child's work in dir: delete Beta, compact, stream
// a delta since the recorded Upto into delta, and record its Upto.
func crashDeltaWork(ctx context.Context, dir string) error {
	o := options(0)
	o.Published = true
	w, err := store.Open(ctx, filepath.Join(dir, "writer"), o)
	if err != nil {
		return err
	}
	defer w.Close()
	since, err := readUpto(dir)
	if err != nil {
		return err
	}
	if _, _, err := w.DeleteBreach(ctx, "Beta"); err != nil {
		return err
	}
	if err := w.CompactNow(); err != nil {
		return err
	}
	var buf bytes.Buffer
	info, err := w.Backup(ctx, &buf, since)
	if err != nil {
		return err
	}
	return publish(dir, buf.Bytes(), info)
}

// publish records a delta and its Upto as the publisher does: the delta
// first, then the Upto that names it, each file renamed into place.
func publish(dir string, delta []byte, info store.BackupInfo) error {
	if err := writeAtomic(filepath.Join(dir, "delta"), delta); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "upto"), fmt.Appendf(nil, "%d %d", info.Upto, info.Keys))
}

func writeAtomic(path string, b []byte) error {
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

func readUpto(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "upto"))
	if err != nil {
		return 0, err
	}
	var upto, keys uint64
	_, err = fmt.Sscanf(string(b), "%d %d", &upto, &keys)
	return upto, err
}

func TestCrashDelta(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	template := filepath.Join(root, "template")
	w := open(t, filepath.Join(template, "writer"), options(0))
	importAll(t, w, storetest.Breach("Alpha"), crashDeltaDigests("Alpha"), 1000)
	importAll(t, w, storetest.Breach("Beta"), crashDeltaDigests("Beta"), 1000)
	var buf bytes.Buffer
	info, err := w.Backup(ctx, &buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fo := options(0)
	fo.Follower = true
	r := open(t, filepath.Join(template, "replica"), fo)
	if _, err := r.ApplyBackup(ctx, &buf, info.Keys); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := publish(template, nil, info); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(template, "delta")) // applied already

	runs := max(len(crashDeltaPoints), crashRuns(t, len(crashOps))/len(crashOps)*len(crashDeltaPoints))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	kills := map[string]int{}
	for run := range runs {
		dir := filepath.Join(root, strconv.Itoa(run))
		copyDir(t, template, dir)
		point := crashDeltaPoints[run%len(crashDeltaPoints)]
		if run >= len(crashDeltaPoints) {
			point = crashDeltaPoints[rng.IntN(len(crashDeltaPoints))]
		}
		switch err := crashChild(dir, "delta", point).Run(); {
		case killed(err):
			kills[point]++
		case err != nil:
			t.Fatalf("run %d (%s): child failed: %v", run, point, err)
		}
		checkDeltaRun(t, dir, fmt.Sprintf("run %d (killed at %s)", run, point))
		os.RemoveAll(dir)
	}
	t.Logf("%d runs, killed at: %v", runs, kills)
}

// checkDeltaRun is the parent's part of a run in dir: apply what the child
// published, restart the writer, finish its work, ship, compare.
func checkDeltaRun(t *testing.T, dir, when string) {
	t.Helper()
	ctx := context.Background()
	fo := options(0)
	fo.Follower = true
	r := open(t, filepath.Join(dir, "replica"), fo)
	defer r.Close()
	since, err := readUpto(dir)
	if err != nil {
		t.Fatal(err)
	}
	if delta, err := os.ReadFile(filepath.Join(dir, "delta")); err == nil {
		if _, err := r.ApplyBackup(ctx, bytes.NewReader(delta), 0); err != nil {
			t.Fatalf("%s: applying the child's delta: %v", when, err)
		}
	}
	o := options(0)
	o.Published = true
	w := open(t, filepath.Join(dir, "writer"), o)
	defer w.Close()
	if _, _, err := w.Breach(ctx, "Beta"); err == nil {
		if _, _, err := w.DeleteBreach(ctx, "Beta"); err != nil {
			t.Fatalf("%s: deleting Beta again: %v", when, err)
		}
	}
	importAll(t, w, storetest.Breach("Gamma"), crashDeltaDigests("Gamma"), 1000)
	if err := w.CompactNow(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	info, err := w.Backup(ctx, &buf, since)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ApplyBackup(ctx, &buf, info.Keys); err != nil {
		t.Fatalf("%s: applying the next delta: %v", when, err)
	}
	wb, _, _ := w.Breaches(ctx)
	rb, _, _ := r.Breaches(ctx)
	if got, want := names(rb), names(wb); !slices.Equal(got, want) || !slices.Equal(want, []string{"Alpha", "Gamma"}) {
		t.Fatalf("%s: the replica lists %v, the writer %v; want [Alpha Gamma] on both", when, got, want)
	}
	for _, name := range []string{"Alpha", "Beta", "Gamma"} {
		for _, d := range crashDeltaDigests(name) {
			got, _, err := r.Lookup(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := w.Lookup(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names(got), names(want)) {
				t.Fatalf("%s: an account of %s: the replica answers %v, the writer %v", when, name, names(got), names(want))
			}
		}
	}
}
