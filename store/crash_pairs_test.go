package store_test

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// The crash harness for pairs: a combolist import (three commits: the
// SHA-1 release, the pair corpus, then the email corpus) and a delete of
// its breach (the email corpus, the release, then the pairs) are SIGKILLed at a point drawn
// from their batches, filter saves and commits. At restart every answer
// must be exact: Combo wholly visible with each account's password status
// (exposed for its password, not exposed for another), or wholly absent;
// and running the work again completes it. The states between the two
// commits are the ones service/pairs.go argues never answer wrongly.

var crashPairOps = []string{"pair-import", "pair-delete"}

const crashPairs = 12_000 // Combo's pairs; its first 1,000 accounts are also in Base

func pairAccounts() []breachd.Digest {
	return append(storetest.Digests("base", 1000), storetest.Digests("combo", crashPairs-1000)...)
}

func pairPassword(i int) [20]byte {
	return sha1.Sum(binary.BigEndian.AppendUint64([]byte("pw"), uint64(i)))
}

func comboList() iter.Seq2[[]breachd.PairRecord, error] {
	ds := pairAccounts()
	return func(yield func([]breachd.PairRecord, error) bool) {
		for i := 0; i < len(ds); i += 3000 {
			var b []breachd.PairRecord
			for j := i; j < min(i+3000, len(ds)); j++ {
				b = append(b, breachd.PairRecord{Account: ds[j], Password: pairPassword(j)})
			}
			if !yield(b, nil) {
				return
			}
		}
	}
}

// pairService opens the email and pair corpora of data directory dir.
func openPairService(tb testing.TB, dir string) (*service.Service, func()) {
	tb.Helper()
	emails, err := store.Open(context.Background(), store.EmailDir(dir), options(0))
	if err != nil {
		tb.Fatal(err)
	}
	pairs, err := store.OpenPairs(context.Background(), store.PairDir(dir), options(0))
	if err != nil {
		tb.Fatal(err)
	}
	pw, err := store.OpenPasswords(context.Background(), store.PasswordDir(dir, breachd.SHA1), breachd.SHA1, options(0))
	if err != nil {
		tb.Fatal(err)
	}
	return service.New(emails, service.WithPairs(pairs), service.WithPasswords(breachd.SHA1, pw)), func() { pw.Close(); pairs.Close(); emails.Close() }
}

// crashPairWork is the child's work, and the parent's after the kill.
func crashPairWork(ctx context.Context, svc *service.Service, op string) error {
	switch op {
	case "pair-import":
		_, err := svc.ImportPairs(ctx, breachd.Breach{Name: "Combo", Title: "Combo"}, comboList(), service.CountPasswords())
		return err
	case "pair-delete":
		_, _, err := svc.DeleteBreach(ctx, "Combo")
		return err
	}
	return fmt.Errorf("unknown op %q", op)
}

// checkPairs checks a sample of Combo's accounts (and of Base's) through
// Assess: all of Combo or none of it, and when it is there, each account's
// password exposed and another not.
func checkPairs(t *testing.T, svc *service.Service, when string) (comboVisible bool) {
	t.Helper()
	ds := pairAccounts()
	seen := 0
	for i := 0; i < len(ds); i += 97 {
		right, wrong := pairPassword(i), pairPassword(i+1)
		inBase := i < 1000
		var statuses [2]map[string]breachd.PasswordStatus
		var counts [2]uint64
		for k, pw := range [][20]byte{right, wrong} {
			a, err := svc.Assess(context.Background(), breachd.AssessRequest{Account: ds[i], Password: pw, HasPassword: true})
			if err != nil {
				t.Fatalf("%s: Assess: %v", when, err)
			}
			counts[k] = a.PasswordCount
			statuses[k] = map[string]breachd.PasswordStatus{}
			for _, b := range a.Breaches {
				statuses[k][b.Name] = b.Password
			}
		}
		if _, ok := statuses[0]["Base"]; ok != inBase || statuses[0]["Base"] != breachd.PasswordUnknown {
			t.Fatalf("%s: account %d: Base %v (in Base: %v)", when, i, statuses[0], inBase)
		}
		st, ok := statuses[0]["Combo"]
		if ok && counts[0] != 1 {
			t.Fatalf("%s: account %d: Combo answers, but its password counts %d, want 1", when, i, counts[0])
		}
		if ok {
			seen++
			if st != breachd.PasswordExposed || statuses[1]["Combo"] != breachd.PasswordNotExposed {
				t.Fatalf("%s: account %d: Combo is %s for its password and %s for another; want exposed and not_exposed", when, i, st, statuses[1]["Combo"])
			}
		} else if _, other := statuses[1]["Combo"]; other {
			t.Fatalf("%s: account %d: Combo answers for one password and not another", when, i)
		}
	}
	if seen != 0 && seen != (len(ds)+96)/97 {
		t.Fatalf("%s: Combo answers for %d of the sampled accounts: a breach half visible", when, seen)
	}
	return seen > 0
}

func TestCrashPairs(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Parallel()
	root := t.TempDir()
	before, withCombo := filepath.Join(root, "base"), filepath.Join(root, "combo")
	svc, done := openPairService(t, before)
	if _, err := svc.Import(context.Background(), breachd.Breach{Name: "Base", Title: "Base"}, storetest.Batches(storetest.Digests("base", 5000), 2500, nil)); err != nil {
		t.Fatal(err)
	}
	done()
	copyDir(t, before, withCombo)
	svc, done = openPairService(t, withCombo)
	if err := crashPairWork(context.Background(), svc, "pair-import"); err != nil {
		t.Fatal(err)
	}
	done()

	runs := max(2*len(crashPairOps), crashRuns(t, len(crashOps))/len(crashOps)*2*len(crashPairOps))
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	kills := map[string]int{}
	for run := range runs {
		op := crashPairOps[run%len(crashPairOps)]
		dir := filepath.Join(root, fmt.Sprintf("run-%d", run))
		var points []string
		if op == "pair-import" {
			copyDir(t, before, dir)
			// Four batches into each corpus; the pairs' filter save and
			// then the emails' (after the pairs committed).
			for b := 1; b <= 8; b++ {
				points = append(points, fmt.Sprintf("import-batch:%d", b))
			}
			// The filter saves of the release's, the pairs' and the
			// emails' commits, in that order: whole, or logged.
			for n := 1; n <= 3; n++ {
				points = append(points, fmt.Sprintf("filter-written:%d", n), fmt.Sprintf("filter-renamed:%d", n),
					fmt.Sprintf("filter-log-torn:%d", n), fmt.Sprintf("filter-logged:%d", n))
			}
		} else {
			copyDir(t, withCombo, dir)
			// After the emails' delete commits, after the release's,
			// before the pairs'; and inside the collections.
			points = []string{"delete-committed:1", "delete-committed:2", "delete-committed:3", "collect-row:1", "collect-row:3"}
		}
		point := points[r.IntN(len(points))]
		cmd := crashChild(dir, op, point)
		switch err := cmd.Run(); {
		case killed(err):
			kills[op+" at "+point]++
		case err != nil:
			t.Fatalf("run %d (%s): child failed: %v", run, op, err)
		}
		when := fmt.Sprintf("run %d (%s killed at %s)", run, op, point)
		svc, done := openPairService(t, dir)
		checkPairs(t, svc, when)
		// A delete that got through both corpora before the kill has
		// nothing left to delete.
		if err := crashPairWork(context.Background(), svc, op); err != nil && !(op == "pair-delete" && errors.Is(err, breachd.ErrNotFound)) {
			t.Fatalf("%s: doing it again: %v", when, err)
		}
		if visible := checkPairs(t, svc, when+", then done again"); visible != (op == "pair-import") {
			t.Fatalf("%s, then done again: Combo visible %v", when, visible)
		}
		// A finished delete leaves none of the combolist's passwords counted.
		if op == "pair-delete" {
			a, err := svc.Assess(context.Background(), breachd.AssessRequest{Account: pairAccounts()[5], Password: pairPassword(5), HasPassword: true})
			if err != nil || a.PasswordCount != 0 {
				t.Fatalf("%s, then done again: the deleted combolist's password counts %d (%v), want 0", when, a.PasswordCount, err)
			}
		}
		done()
		os.RemoveAll(dir)
	}
	t.Logf("%d runs, killed: %v", runs, kills)
}
