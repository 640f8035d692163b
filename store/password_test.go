package store_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/store"
)

// pwRecords returns n records of kind k: distinct hashes of a named set,
// counts i%97+1 (times mul).
func pwRecords(k breachd.HashKind, set string, n int, mul uint64) []breachd.PasswordRecord {
	out := make([]breachd.PasswordRecord, n)
	for i := range out {
		h := sha1.Sum(fmt.Appendf(nil, "%s-%d", set, i))
		copy(out[i].Hash[:k.Size()], h[:])
		out[i].Count = uint64(i%97+1) * mul
	}
	return out
}

func pwBatches(recs []breachd.PasswordRecord, size int, fail error) iter.Seq2[[]breachd.PasswordRecord, error] {
	return func(yield func([]breachd.PasswordRecord, error) bool) {
		for lo := 0; lo < len(recs); lo += size {
			if !yield(recs[lo:min(lo+size, len(recs))], nil) {
				return
			}
		}
		if fail != nil {
			yield(nil, fail)
		}
	}
}

func openPw(tb testing.TB, dir string, k breachd.HashKind, o store.Options) *store.Passwords {
	tb.Helper()
	p, err := store.OpenPasswords(context.Background(), dir, k, o)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func release(name string) breachd.Breach { return breachd.Breach{Name: name, Title: name} }

// wantCounts checks every record's count, and the range of its prefix.
func wantCounts(tb testing.TB, p *store.Passwords, k breachd.HashKind, want map[string]uint64, version uint64) {
	tb.Helper()
	ctx := context.Background()
	prefixes := map[breachd.RangePrefix]bool{}
	for hs, n := range want {
		h, _ := breachd.PasswordHashFromBytes(k, []byte(hs))
		got, err := p.Lookup(ctx, h)
		if err != nil || got.Count != n || got.CorpusVersion != version {
			tb.Fatalf("Lookup(%s) = %+v, %v; want count %d at version %d", h, got, err, n, version)
		}
		if len(prefixes) < 50 {
			prefixes[store.RangeOf([]byte(hs))] = true
		}
	}
	for pre := range prefixes {
		var got []string
		v, err := p.Range(ctx, pre, func(h []byte, n uint64) {
			if want[string(h)] != n {
				tb.Errorf("Range(%s) gave %X:%d, want count %d", pre, h, n, want[string(h)])
			}
			got = append(got, string(h))
		})
		if err != nil || v != version {
			tb.Fatalf("Range(%s) = version %d, %v; want version %d", pre, v, err, version)
		}
		var exp []string
		for hs, n := range want {
			if n > 0 && store.RangeOf([]byte(hs)) == pre {
				exp = append(exp, hs)
			}
		}
		slices.Sort(exp)
		if !slices.Equal(got, exp) {
			tb.Fatalf("Range(%s) gave %d hashes, want %d (in order)", pre, len(got), len(exp))
		}
	}
}

func countsOf(k breachd.HashKind, m map[string]uint64, recs []breachd.PasswordRecord) {
	for _, r := range recs {
		m[string(r.Hash[:k.Size()])] = r.Count
	}
}

// TestPasswords follows a password corpus of each kind through releases:
// exact counts and ranges; a second release that updates, adds and keeps,
// with the old counts answering until its commit; repeats that add up; an
// abandoned release that changes nothing and is collected by the running
// corpus; and a reopen that loads the saved filter.
func TestPasswords(t *testing.T) {
	t.Parallel()
	for _, k := range breachd.HashKinds {
		t.Run(k.String(), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			var logs logtest.Buffer
			o := options(0)
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			p := openPw(t, dir, k, o)
			r1 := pwRecords(k, "a", 3000, 1)
			st, err := p.Import(ctx, release("PP-1"), uint64(len(r1)), pwBatches(r1, 1500, nil))
			if err != nil || st.NewHashes != 3000 || st.Version != 1 {
				t.Fatalf("first import = %+v, %v; want 3000 new hashes at version 1", st, err)
			}
			want := map[string]uint64{}
			countsOf(k, want, r1)
			for _, r := range pwRecords(k, "outsider", 500, 1) {
				want[string(r.Hash[:k.Size()])] = 0
			}
			wantCounts(t, p, k, want, 1)

			// Release 2: half of release 1 with counts times 10, and new
			// hashes. Until it commits, every lookup answers release 1.
			r2 := append(pwRecords(k, "a", 1500, 10), pwRecords(k, "b", 750, 1)...)
			old := map[string]uint64{}
			countsOf(k, old, r1)
			checked := 0
			mid := func(yield func([]breachd.PasswordRecord, error) bool) {
				for rs, err := range pwBatches(r2, 500, nil) {
					if !yield(rs, err) {
						return
					}
					h, _ := breachd.PasswordHashFromBytes(k, r2[0].Hash[:k.Size()])
					got, _ := p.Lookup(ctx, h)
					nb, _ := breachd.PasswordHashFromBytes(k, r2[len(r2)-1].Hash[:k.Size()])
					gotNew, _ := p.Lookup(ctx, nb)
					if got.Count != old[string(h.Bytes())] || gotNew.Count != 0 || got.CorpusVersion != 1 {
						t.Errorf("during release 2: counts %d and %d at version %d, want release 1's (%d and 0)", got.Count, gotNew.Count, got.CorpusVersion, old[string(h.Bytes())])
					}
					checked++
				}
			}
			st, err = p.Import(ctx, release("PP-2"), 0, mid)
			if err != nil || st.NewHashes != 750 || st.UpdatedHashes != 1500 || st.Version != 2 || checked == 0 {
				t.Fatalf("second import = %+v, %v; want 750 new, 1500 updated at version 2", st, err)
			}
			countsOf(k, want, r2)
			wantCounts(t, p, k, want, 2)

			// Repeats within a release add up (a plain list hashed on import).
			rep := pwRecords(k, "c", 100, 1)
			rep = append(rep, rep...)
			if _, err := p.Import(ctx, release("PP-3"), 0, pwBatches(rep, 70, nil)); err != nil {
				t.Fatal(err)
			}
			for _, r := range rep {
				want[string(r.Hash[:k.Size()])] = 2 * r.Count
			}
			wantCounts(t, p, k, want, 3)

			// A later release never lowers a count: 1 for hashes that
			// have up to 970.
			low := pwRecords(k, "a", 100, 1)
			for i := range low {
				low[i].Count = 1
			}
			if _, err := p.Import(ctx, release("PP-low"), 0, pwBatches(low, 50, nil)); err != nil {
				t.Fatal(err)
			}
			wantCounts(t, p, k, want, 4)

			// An abandoned release changes nothing.
			bad := pwRecords(k, "a", 1000, 1000)
			if _, err := p.Import(ctx, release("PP-4"), 0, pwBatches(bad, 500, errors.New("dump unreadable"))); err == nil {
				t.Fatal("an import whose batches failed committed")
			}
			wantCounts(t, p, k, want, 4)
			if p.Hashes() != 3850 {
				t.Fatalf("Hashes() = %d, want 3850", p.Hashes())
			}
			// The running corpus collects it; Collect waits for that.
			if cs, err := p.Collect(ctx); err != nil || cs.Segments != 0 || !strings.Contains(logs.String(), "segments=1") {
				t.Errorf("the abandoned release was not collected by the running corpus (Collect after it: %+v, %v):\n%s", cs, err, logs.String())
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}

			// Reopen: the filter is loaded, the leftovers collected, the
			// superseded entries dropped; answers unchanged.
			logs.Reset()
			p = openPw(t, dir, k, o)
			defer p.Close()
			cs, err := p.Collect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(logs.String(), "rebuilding bloom filter") {
				t.Errorf("reopen rebuilt the filter:\n%s", logs.String())
			}
			if cs.Segments != 0 || cs.Deleted != 0 {
				t.Errorf("Collect after a reopen = %+v, want nothing left to collect", cs)
			}
			wantCounts(t, p, k, want, 4)
			if p.Hashes() != 3850 || p.Version() != 4 || len(p.Releases()) != 4 {
				t.Fatalf("after reopen: %d hashes, version %d, %d releases; want 3850, 4, 4", p.Hashes(), p.Version(), len(p.Releases()))
			}
		})
	}
}

// TestPasswordInput refuses what a password corpus cannot hold, clearly.
func TestPasswordInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := openPw(t, t.TempDir(), breachd.SHA1, options(0))
	defer p.Close()
	ntlm, _ := breachd.ParsePasswordHash(breachd.NTLM, strings.Repeat("A", 32))
	if _, err := p.Lookup(ctx, ntlm); !errors.Is(err, breachd.ErrInvalidArgument) {
		t.Errorf("an NTLM hash asked of the SHA-1 corpus: %v, want invalid argument", err)
	}
	zero := pwRecords(breachd.SHA1, "z", 3, 1)
	zero[1].Count = 0
	if _, err := p.Import(ctx, release("Z"), 0, pwBatches(zero, 10, nil)); !errors.Is(err, breachd.ErrInvalidArgument) {
		t.Errorf("a count of 0: %v, want invalid argument", err)
	}
	if _, err := p.Import(ctx, release("E"), 0, pwBatches(nil, 10, nil)); !errors.Is(err, breachd.ErrEmptyImport) {
		t.Errorf("an empty release: %v, want %v", err, breachd.ErrEmptyImport)
	}
	if _, err := p.Range(ctx, 0xABCDE, func([]byte, uint64) { t.Error("a range of an empty corpus gave a hash") }); err != nil {
		t.Fatal(err)
	}
	if p.Version() != 0 {
		t.Fatalf("version %d after refused imports, want 0", p.Version())
	}
}

// TestPasswordStream: a first release in order streams into sorted tables;
// one that falls out of order part way goes on with write batches; either
// way every count is exact, repeats added up.
func TestPasswordStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := breachd.SHA1
	sorted := pwRecords(k, "s", 12_000, 1)
	slices.SortFunc(sorted, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	for _, tc := range []struct {
		name     string
		recs     []breachd.PasswordRecord
		fallback bool
	}{
		{"in order", sorted, false},
		// The second half again (its counts add up), then the first.
		{"out of order", append(append(slices.Clone(sorted[6000:]), sorted[8000:]...), sorted[:6000]...), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logtest.Buffer
			o := options(0)
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			p := openPw(t, t.TempDir(), k, o)
			defer p.Close()
			st, err := p.Import(ctx, release("PP"), 12_000, pwBatches(tc.recs, 1500, nil))
			if err != nil || st.NewHashes != 12_000 || st.Received != uint64(len(tc.recs)) {
				t.Fatalf("import = %+v, %v; want 12000 new hashes of %d received", st, err, len(tc.recs))
			}
			if fell := strings.Contains(logs.String(), "going on with write batches"); fell != tc.fallback {
				t.Errorf("fell back to write batches: %v, want %v:\n%s", fell, tc.fallback, logs.String())
			}
			want := map[string]uint64{}
			for _, r := range tc.recs {
				want[string(r.Hash[:k.Size()])] += r.Count
			}
			wantCounts(t, p, k, want, 1)
		})
	}
}
