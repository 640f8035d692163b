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
// streamed into sorted tables, in hash order with its lookup index written
// in the same pass and installed after the commit, or out of order, leaving
// the stream for write batches; and a later one merged into a corpus that
// has a release, its index rebuilt before the import returns) is SIGKILLed
// at a random moment; at reopen the release is wholly visible or not at
// all, every hash answering the count it should (from the saved index if it
// is current, from Badger otherwise, and from an index built then), and
// importing it again completes it. (The email kind's harness is TestCrash;
// both run the same engine.)

var crashPasswordOps = []string{"password-first", "password-first-sorted", "password-later"}

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
// password-first-sorted: the child's work, and the parent's after the kill.
func crashPasswordWork(ctx context.Context, p *store.Passwords, op string) error {
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
	runs := max(len(crashPasswordOps), crashRuns(t, len(crashOps))/len(crashOps)*len(crashPasswordOps))
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	kills := map[string]int{}
	for run := range runs {
		op := crashPasswordOps[run%len(crashPasswordOps)]
		dir := filepath.Join(root, fmt.Sprintf("run-%d", run))
		if op == "password-later" {
			copyDir(t, template, dir)
		}
		// The child kills itself at a point drawn from the import's
		// batches and its filter save (a kill from outside mostly lands
		// after so quick an import).
		points := []string{"filter-written:1", "filter-renamed:1", "index-written:1", "index-renamed:1"}
		for b := 1; b*5000 < len(crashPasswordRecords("Large")); b++ {
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
	if op == "password-later" {
		countsOf(breachd.SHA1, want, crashPasswordRecords("Base"))
	}
	large := crashPasswordRecords("Large")
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
	for i, rec := range large {
		if i%17 != 0 && i >= 1000 {
			continue // a sample of Large's own hashes, and every shared one
		}
		h, _ := breachd.PasswordHashFromBytes(breachd.SHA1, rec.Hash[:breachd.SHA1.Size()])
		got, err := p.Lookup(ctx, h)
		if err != nil {
			t.Fatalf("%s: Lookup: %v", when, err)
		}
		if w := want[string(rec.Hash[:breachd.SHA1.Size()])]; got.Count != w {
			t.Fatalf("%s: a hash of Large answers count %d, want %d (Large in the catalogue: %v)", when, got.Count, w, hasRelease(p, "Large"))
		}
	}
}
