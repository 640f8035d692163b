package store_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
)

// TestPasswordIndex follows a password corpus whose lookups and ranges read
// its lookup index, and checks every answer against a corpus of the same
// releases without an index (Badger's and its base's answers; against a
// model of the counts: TestPasswordBase): a first release written by the
// stream (its base, linked as the index: the directory sized from the
// expected count given, over it, or without one), or out of order (the
// stream is left, the index built from Badger and the base); counts too
// large for a record; a second release that raises and adds counts; its
// delete, which makes the index stale until it is rebuilt; a reopen that
// loads the saved
// index; and a replica fed by backups. (TestCountedLayouts checks the
// records of a directory of 1<<24 buckets, which leave out 3 key bytes:
// its filter would make this test slow.)
//
// make test runs it in the no-race job: the race detector checks the
// paths it drives through TestPasswords (counts and ranges read while the
// index is rebuilt in the background), TestConformance/sha1 and TestIndex.
func TestPasswordIndex(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		kind     breachd.HashKind
		n        int
		expected uint64
		sorted   bool
	}{
		{"sha1/expected", breachd.SHA1, 1200, 1200, true},
		{"ntlm/unknown", breachd.NTLM, 1200, 0, true},
		{"sha1/over-expected", breachd.SHA1, 1200, 1 << 20, true},
		{"sha1/unsorted", breachd.SHA1, 1200, 1200, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testPasswordIndex(t, tc.kind, tc.n, tc.expected, tc.sorted, false)
		})
	}
}

// TestPasswordIndexLarge is TestPasswordIndex's first release and reopen
// over more keys than a directory of 1<<16 buckets is sized for, with none
// expected: the stream writes the directory at 16 bits and rebuilds it at
// 17 from the records (rebucket). make test runs it in the no-race job.
func TestPasswordIndexLarge(t *testing.T) {
	t.Parallel()
	testPasswordIndex(t, breachd.SHA1, 300_000, 0, true, true)
}

func testPasswordIndex(t *testing.T, k breachd.HashKind, n int, expected uint64, sorted, firstOnly bool) {
	ctx := context.Background()
	dir := t.TempDir()
	o := options(0)
	o.Index = store.IndexInline
	p := openPw(t, filepath.Join(dir, "indexed"), k, o)
	defer func() { p.Close() }()
	ro := options(0)
	ro.Index = store.IndexOff
	ref := openPw(t, filepath.Join(dir, "badger"), k, ro)
	defer ref.Close()
	fo := options(0)
	fo.Index, fo.Follower = store.IndexInline, true
	fol := openPw(t, filepath.Join(dir, "follower"), k, fo)
	defer fol.Close()
	ship := shipper(t, func() backupCorpus { return p }, func() applyCorpus { return fol }) // p is reopened below
	both := func(rel string, recs []breachd.PasswordRecord, expected uint64) {
		t.Helper()
		for _, c := range []*store.Passwords{p, ref} {
			if _, err := c.Import(ctx, release(rel), expected, pwBatches(recs, 500, nil)); err != nil {
				t.Fatalf("import %s: %v", rel, err)
			}
		}
		if !firstOnly {
			ship()
		}
	}

	first := pwRecords(k, "first", n, 1)
	// Counts around a record's 3 bytes: the largest it holds, and the
	// first two it escapes (read from Badger), one of them over 32 bits.
	first[n/4].Count = 1<<24 - 2
	first[n/3].Count = 1<<24 - 1
	first[n/2].Count = 1<<32 + 7
	if sorted {
		slices.SortFunc(first, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	}
	both("first", first, expected)
	probe := append(slices.Clone(first), pwRecords(k, "absent", 200, 1)...)
	if firstOnly {
		// The writer's stream is what the large case is for: a replica
		// builds its index from Badger, sized from the count it is sent.
		agree(t, "first release", probe, ref, p)
	} else {
		agree(t, "first release", probe, ref, p, fol)
	}
	reopen := func() {
		t.Helper()
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		o.Index = store.IndexBackground // loads the saved index; builds none before answering
		p = openPw(t, filepath.Join(dir, "indexed"), k, o)
		agree(t, "reopened", probe, ref, p)
	}
	if firstOnly {
		reopen()
		return
	}

	second := append(pwRecords(k, "first", n/2, 3), pwRecords(k, "second", n/10, 5)...)
	both("second", second, 0)
	probe = append(probe, second...)
	agree(t, "second release", probe, ref, p, fol)

	// A release whose rows all reach the replica before its commit (a
	// backup taken while it was pending), the commit then shipping without
	// a row: the replica's index, built while the release was pending,
	// must not answer for the catalogue that commits it.
	third := append(pwRecords(k, "first", n/4, 7), pwRecords(k, "third", n/10, 11)...)
	if _, err := ref.Import(ctx, release("third"), 0, pwBatches(third, 500, nil)); err != nil {
		t.Fatal(err)
	}
	_, err := p.Import(ctx, release("third"), 0, func(yield func([]breachd.PasswordRecord, error) bool) {
		for rs := range pwBatches(third, 500, nil) {
			if !yield(rs, nil) {
				return
			}
		}
		ship() // every row written, the release pending
	})
	if err != nil {
		t.Fatal(err)
	}
	ship()
	probe = append(probe, third...)
	agree(t, "a release shipped before its commit", probe, ref, p, fol)

	for _, c := range []*store.Passwords{p, ref} {
		if _, _, err := c.DeleteBreach(ctx, "second"); err != nil {
			t.Fatal(err)
		}
	}
	// Compacted before it ships, as happened once by chance at 300,000
	// hashes: the delta must still carry the delete.
	if err := p.CompactNow(); err != nil {
		t.Fatal(err)
	}
	ship()
	agree(t, "second release deleted", probe, ref, p, fol)
	reopen()
}

// agree checks that the indexed corpora answer every record's hash and the
// range of its prefix (and of 100 random prefixes) as ref does, reading
// their indexes.
func agree(t *testing.T, when string, probe []breachd.PasswordRecord, ref *store.Passwords, indexed ...*store.Passwords) {
	t.Helper()
	ctx := context.Background()
	k := ref.Kind()
	for _, p := range indexed {
		if st := p.Stats().Index; !st.Current || st.Digests == 0 {
			t.Fatalf("%s: index %+v, want a current one", when, st)
		}
	}
	prefixes := map[breachd.RangePrefix]bool{}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		prefixes[breachd.RangePrefix(r.Uint32N(1<<20))] = true
	}
	var escaped bool
	var wrong int
	for _, rec := range probe {
		h := breachd.PasswordHash{Kind: k, B: rec.Hash}
		want, err := ref.Lookup(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		escaped = escaped || want.Count > 1<<32
		for i, p := range indexed {
			if got, err := p.Lookup(ctx, h); err != nil || got.Count != want.Count {
				t.Errorf("%s: Lookup(%s) = %d at version %d, %v; want %d at %d (corpus %d, index %+v)",
					when, h, got.Count, got.CorpusVersion, err, want.Count, want.CorpusVersion, i, p.Stats().Index)
				if wrong++; wrong == 10 {
					t.FailNow()
				}
			}
		}
		prefixes[store.RangeOf(rec.Hash[:])] = true
	}
	if wrong > 0 {
		t.FailNow()
	}
	if !escaped {
		t.Fatalf("%s: no count over 2^32 among the answers", when)
	}
	type hc struct {
		h string
		n uint64
	}
	rangeOf := func(c *store.Passwords, pre breachd.RangePrefix) []hc {
		var out []hc
		if _, err := c.Range(ctx, pre, func(h []byte, n uint64) { out = append(out, hc{string(h), n}) }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for pre := range prefixes {
		want := rangeOf(ref, pre)
		for _, p := range indexed {
			if got := rangeOf(p, pre); !slices.Equal(got, want) {
				t.Fatalf("%s: Range(%s) gave %d hashes, want %d (the same, in order)", when, pre, len(got), len(want))
			}
		}
	}
}
