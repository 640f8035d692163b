package store_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
)

// The crash harness for password corpora: a release import (a first one,
// streamed into the corpus's base (base.go), in hash order with the base
// linked as the lookup index after the commit, or out of order, leaving the
// stream for write batches over the base; and a later one merged into a
// corpus that has a release, its index rebuilt before the import returns),
// or the delete of the base's release and its collection, is SIGKILLed
// at a random moment; at reopen the release is wholly visible or not at
// all, every hash answering the count it should (from the saved index if it
// is current, from Badger otherwise, and from an index built then), and
// importing it again completes it. (The email kind's harness is TestCrash;
// both run the same engine.)

var crashPasswordOps = []string{"password-first", "password-first-sorted", "password-later", "password-delete-base"}

// crashPasswordRecords is what each release holds: Base 20,000 hashes;
// Large crashLarge hashes and, at three times their counts, Base's first
// 1,000 (a later release raises them to the higher count).
func crashPasswordRecords(name string) []breachd.PasswordRecord {
	if name == "Base" {
		return pwRecords(breachd.SHA1, "base", 20_000, 1)
	}
	return append(pwRecords(breachd.SHA1, "base", 1000, 3), pwRecords(breachd.SHA1, "large", crashLarge, 2)...)
}

// crashPasswordWork imports release Large, in hash order for op
// password-first-sorted, or deletes release Base, the corpus's base, for
// op password-delete-base (if it is still there): the child's work, and
// the parent's after the kill.
func crashPasswordWork(ctx context.Context, p *store.Passwords, op string) error {
	if op == "password-delete-base" {
		if !hasRelease(p, "Base") {
			return nil
		}
		_, _, err := p.DeleteBreach(ctx, "Base")
		return err
	}
	recs := crashPasswordRecords("Large")
	if op == "password-first-sorted" {
		slices.SortFunc(recs, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	}
	_, err := p.Import(ctx, release("Large"), uint64(len(recs)), pwBatches(recs, 5000, nil))
	return err
}

func TestCrashPasswords(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Parallel()
	root := t.TempDir()
	template := filepath.Join(root, "template")
	p := openPw(t, store.PasswordDir(template, breachd.SHA1), breachd.SHA1, options(0))
	base := crashPasswordRecords("Base")
	if _, err := p.Import(context.Background(), release("Base"), uint64(len(base)), pwBatches(base, 5000, nil)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Base, its base (a first release), and Large over it: the template
	// of op password-delete-base.
	withLarge := filepath.Join(root, "template-large")
	copyDir(t, template, withLarge)
	p = openPw(t, store.PasswordDir(withLarge, breachd.SHA1), breachd.SHA1, options(0))
	if err := crashPasswordWork(context.Background(), p, "password-later"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	runs := max(len(crashPasswordOps), crashRuns(t, len(crashOps))/len(crashOps)*len(crashPasswordOps))
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	kills := map[string]int{}
	for run := range runs {
		op := crashPasswordOps[run%len(crashPasswordOps)]
		dir := filepath.Join(root, fmt.Sprintf("run-%d", run))
		switch op {
		case "password-later":
			copyDir(t, template, dir)
		case "password-delete-base":
			copyDir(t, withLarge, dir)
		}
		// The child kills itself at a point drawn from the import's
		// batches and its filter save (a kill from outside mostly lands
		// after so quick an import), or from the delete's collection.
		points := []string{"filter-written:1", "filter-renamed:1", "filter-log-torn:1", "filter-logged:1", "index-written:1", "index-renamed:1"}
		switch op {
		case "password-first", "password-first-sorted":
			points = append(points, "base-written:1", "base-renamed:1")
		case "password-delete-base":
			points = []string{"delete-committed:1", "collect-row:1", "collect-row:5000", "collect-row:20000", "base-unrecorded:1", "filter-written:1", "filter-logged:1"}
		}
		for b := 1; b*5000 < len(crashPasswordRecords("Large")) && op != "password-delete-base"; b++ {
			points = append(points, fmt.Sprintf("import-batch:%d", b))
		}
		point := points[r.IntN(len(points))]
		cmd := crashChild(dir, op, point)
		switch err := cmd.Run(); {
		case killed(err):
			kills[op+" at "+point]++
		case err != nil:
			t.Fatalf("run %d (%s): child failed: %v", run, op, err)
		}
		p := openPw(t, store.PasswordDir(dir, breachd.SHA1), breachd.SHA1, options(0))
		checkPasswordRelease(t, p, op, fmt.Sprintf("run %d (%s) after the kill", run, op))
		if err := p.BuildIndex(context.Background()); err != nil {
			t.Fatalf("run %d (%s): building the index: %v", run, op, err)
		}
		if len(p.Releases()) > 0 && !p.Stats().Index.Current {
			t.Fatalf("run %d (%s): no current index after BuildIndex", run, op)
		}
		checkPasswordRelease(t, p, op, fmt.Sprintf("run %d (%s) after the kill, from the index", run, op))
		if err := crashPasswordWork(context.Background(), p, op); err != nil {
			t.Fatalf("run %d (%s): importing again: %v", run, op, err)
		}
		checkPasswordRelease(t, p, op, fmt.Sprintf("run %d (%s) after importing again", run, op))
		if !hasRelease(p, "Large") {
			t.Fatalf("run %d (%s): Large missing after importing it again", run, op)
		}
		// The first release's base, unless it was deleted: once the
		// collection the open resumed has ended (Collect waits for it).
		if _, err := p.Collect(context.Background()); err != nil {
			t.Fatalf("run %d (%s): collect: %v", run, op, err)
		}
		if _, err := os.Stat(filepath.Join(store.PasswordDir(dir, breachd.SHA1), "breachd.base")); (err == nil) != (op != "password-delete-base") {
			t.Fatalf("run %d (%s): a base file: %v", run, op, err == nil)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(dir)
	}
	t.Logf("%d runs, killed mid-import: %v", runs, kills)
}

func hasRelease(p *store.Passwords, name string) bool {
	for _, r := range p.Releases() {
		if r.Name == name {
			return true
		}
	}
	return false
}

// checkPasswordRelease checks that release Large is all there or not at
// all: each of its hashes (and Base's) answers the count the releases in
// the catalogue give it.
func checkPasswordRelease(t *testing.T, p *store.Passwords, op, when string) {
	t.Helper()
	want := map[string]uint64{}
	large := crashPasswordRecords("Large")
	probe := large
	if op == "password-delete-base" {
		probe = append(slices.Clone(large), crashPasswordRecords("Base")[1000:]...)
	}
	switch {
	case op == "password-later" || op == "password-delete-base" && hasRelease(p, "Base"):
		countsOf(breachd.SHA1, want, crashPasswordRecords("Base"))
	case op == "password-delete-base":
		// Base deleted: its hashes answer nothing, but for those Large
		// holds too (its first 1,000).
		for _, rec := range crashPasswordRecords("Base") {
			want[string(rec.Hash[:breachd.SHA1.Size()])] = 0
		}
	}
	if hasRelease(p, "Large") {
		for _, rec := range large {
			h := string(rec.Hash[:breachd.SHA1.Size()])
			want[h] = max(want[h], rec.Count)
		}
	} else {
		for _, rec := range large {
			h := string(rec.Hash[:breachd.SHA1.Size()])
			if _, ok := want[h]; !ok {
				want[h] = 0 // not exposed
			}
		}
	}
	ctx := context.Background()
	for i, rec := range probe {
		if i%17 != 0 && i >= 1000 {
			continue // a sample of Large's own hashes (and Base's), and every shared one
		}
		h, _ := breachd.PasswordHashFromBytes(breachd.SHA1, rec.Hash[:breachd.SHA1.Size()])
		got, err := p.Lookup(ctx, h)
		if err != nil {
			t.Fatalf("%s: Lookup: %v", when, err)
		}
		if w := want[string(rec.Hash[:breachd.SHA1.Size()])]; got.Count != w {
			t.Fatalf("%s: a hash answers count %d, want %d (Large in the catalogue: %v, Base: %v)", when, got.Count, w, hasRelease(p, "Large"), hasRelease(p, "Base"))
		}
	}
}

// TestCrashReplicaBase kills a replica applying its first snapshot of a
// password corpus with a base: while it writes the base of its own from
// the snapshot's base rows, once Badger holds the rest (the catalogue: the
// apply again finds a corpus version), once the file is in place, or
// while it saves its filter. At reopen the replica opens, and applying the snapshot again
// (as a follower does before it serves) gives every hash its count, from
// a base of the replica's own; so does a reopen after that.
func TestCrashReplicaBase(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	w := openPw(t, filepath.Join(root, "writer"), breachd.SHA1, options(0))
	base := crashPasswordRecords("Base")
	slices.SortFunc(base, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	if _, err := w.Import(ctx, release("Base"), uint64(len(base)), pwBatches(base, 5000, nil)); err != nil {
		t.Fatal(err)
	}
	// A later release over it: rows that shadow the base's entries (the
	// base's first 500 hashes at higher counts) and rows of their own.
	later := append(pwRecords(breachd.SHA1, "base", 500, 3), pwRecords(breachd.SHA1, "later", 500, 2)...)
	if _, err := w.Import(ctx, release("Later"), 0, pwBatches(later, 500, nil)); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	countsOf(breachd.SHA1, want, base)
	for _, rec := range later {
		h := string(rec.Hash[:breachd.SHA1.Size()])
		want[h] = max(want[h], rec.Count)
	}
	snap := filepath.Join(root, "snapshot")
	f, err := os.Create(snap)
	if err != nil {
		t.Fatal(err)
	}
	info, err := w.Backup(ctx, f, 0)
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	apply := func(p *store.Passwords) {
		t.Helper()
		f, err := os.Open(snap)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := p.ApplyBackup(ctx, f, info.Keys); err != nil {
			t.Fatalf("applying the snapshot: %v", err)
		}
	}
	ro := options(0)
	ro.Follower = true
	points := []string{"replica-base-row:1", "replica-base-row:3", "replica-rows-loaded:1", "base-renamed:1", "filter-written:1", "filter-renamed:1"}
	kills := map[string]int{}
	for run := range max(len(points), crashRuns(t, len(crashOps))/len(crashOps)) {
		dir := filepath.Join(root, fmt.Sprintf("run-%d", run))
		point := points[run%len(points)]
		cmd := crashChild(dir, "replica-snapshot", point)
		cmd.Env = append(cmd.Env, "BREACHD_CRASH_SNAPSHOT="+snap, fmt.Sprintf("BREACHD_CRASH_KEYS=%d", info.Keys))
		switch err := cmd.Run(); {
		case killed(err):
			kills[point]++
		case err != nil:
			t.Fatalf("run %d (%s): child failed: %v", run, point, err)
		}
		r := openPw(t, dir, breachd.SHA1, ro)
		apply(r)
		wantCounts(t, r, breachd.SHA1, want, info.Version)
		if _, err := os.Stat(filepath.Join(dir, "breachd.base")); err != nil {
			t.Fatalf("run %d (%s): no base after the snapshot was applied again: %v", run, point, err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		r = openPw(t, dir, breachd.SHA1, ro)
		wantCounts(t, r, breachd.SHA1, want, info.Version)
		r.Close()
		os.RemoveAll(dir)
	}
	if len(kills) != len(points) {
		t.Errorf("killed at %v, want every one of %v", kills, points)
	}
}
