package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"iter"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/blind"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// TestConformance and TestConformanceMatrix run the suite every corpus
// must pass, over every kind of corpus the engine holds and every way it
// is fed:
//
//   - email, in six configurations: with a filter small enough that the
//     imports grow it; with first imports bounded to 500 buffered digests,
//     so that they leave the bulk load midway; with first imports spilling
//     sorted runs of 700 digests; spilling, then leaving the bulk load; with
//     the lookup index built inline (every lookup after a commit reads it),
//     and with no index (every lookup confirms in Badger). The others build
//     it in the background, so lookups switch from Badger to the index as
//     they run.
//   - sha1 and ntlm: password corpora, whose releases are the suite's
//     breaches; an account's digest is cut to the hash's length, and its
//     breaches are the releases whose entries hold it.
//   - email, rekeyed at its first reopen: each check after a reopen reads
//     a keyed corpus made from the plain one the steps before built.
//   - private: a keyed corpus with private rows, every lookup a private
//     check as a client makes it; its random history only, with 64
//     accounts checked a step (a check is two group operations a side).
//   - pairs: the digests of email+password pairs, the email kind's codec
//     under its own tag and without the lookup index.
//   - follower: a read replica answering every lookup, fed by Backup and
//     ApplyBackup after each change made on its writer.
func TestConformance(t *testing.T) { runConformance(t, true) }

// TestConformanceMatrix runs the suite over the other configurations, in
// make test's no-race job: the suite over all eleven took about 84 s of
// the race job's CPU, most of its store package. The race detector checks
// each code path the configurations share through the ones above: the
// email kind with its filter growing and its index built in the
// background or inline, a password kind, and a replica. It also runs every
// configuration's random history (storetest.History), which checks one
// goroutine's answers and so has nothing for the detector.
func TestConformanceMatrix(t *testing.T) { runConformance(t, false) }

// conformanceBackend is one configuration of the suite: raced says
// whether TestConformance (raced) or TestConformanceMatrix runs it.
type conformanceBackend struct {
	name    string
	raced   bool
	open    func(tb testing.TB, dir string) storetest.Backend
	history storetest.HistoryOptions
	// historyOnly: the backend's lookups are too costly for Run's
	// thousands (a private check is about 0.2 ms of group operations).
	historyOnly bool
}

func conformanceBackends() []conformanceBackend {
	var out []conformanceBackend
	for _, tc := range []struct {
		name    string
		raced   bool
		maxBulk int
		chunk   int
		index   store.IndexMode
		delta   int // an index's delta bound: imports over it rebuild, views over it compact
	}{
		{"default", true, 0, 0, store.IndexBackground, 0}, {"bulk-bounded", false, 500, 0, store.IndexBackground, 0},
		{"bulk-spilled", false, 0, 700, store.IndexBackground, 0}, {"spilled-then-bounded", false, 3000, 700, store.IndexBackground, 0},
		{"index-inline", true, 0, 0, store.IndexInline, 0}, {"index-off", false, 0, 0, store.IndexOff, 0},
		{"small-delta", false, 0, 0, store.IndexBackground, 40}, {"small-delta-inline", false, 0, 0, store.IndexInline, 40},
	} {
		out = append(out, conformanceBackend{name: "email/" + tc.name, raced: tc.raced, open: func(tb testing.TB, dir string) storetest.Backend {
			o := store.WithMaxDelta(options(1024), tc.delta)
			o.MaxBulkDigests, o.Index = tc.maxBulk, tc.index
			if tc.chunk > 0 {
				o.BulkChunkDigests = tc.chunk
			}
			return open(tb, dir, o)
		}})
	}
	out = append(out, conformanceBackend{name: "email/rekeyed-at-reopen", raced: false, open: openRekeyed})
	out = append(out, conformanceBackend{name: "pairs", raced: false, open: func(tb testing.TB, dir string) storetest.Backend {
		s, err := store.OpenPairs(context.Background(), dir, options(1024))
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}})
	for _, k := range breachd.HashKinds {
		out = append(out, conformanceBackend{name: k.String(), raced: k == breachd.SHA1, open: func(tb testing.TB, dir string) storetest.Backend {
			return &passwordBackend{Passwords: openPw(tb, dir, k, options(1024))}
		}})
	}
	out = append(out, conformanceBackend{name: "private", open: openPrivateBackend,
		history: storetest.HistoryOptions{Checked: 64}, historyOnly: true})
	out = append(out,
		conformanceBackend{name: "follower", raced: true, open: func(tb testing.TB, dir string) storetest.Backend { return openFollower(tb, dir, store.IndexBackground) }},
		conformanceBackend{name: "follower-index-off", raced: false, open: func(tb testing.TB, dir string) storetest.Backend { return openFollower(tb, dir, store.IndexOff) }},
		conformanceBackend{name: "follower-small-delta", raced: false, open: func(tb testing.TB, dir string) storetest.Backend {
			return openFollowerDelta(tb, dir, store.IndexInline, 40)
		}})
	return out
}

func runConformance(t *testing.T, raced bool) {
	t.Parallel()
	for _, b := range conformanceBackends() {
		if b.raced == raced && !b.historyOnly {
			t.Run(b.name, func(t *testing.T) {
				t.Parallel()
				storetest.Run(t, b.open, true)
			})
		}
		if !raced { // every backend's random history, unraced
			t.Run(b.name+"/RandomHistory", func(t *testing.T) {
				t.Parallel()
				storetest.History(t, b.open, b.history)
			})
		}
	}
}

// openRekeyed opens the email corpus of data directory dir plain the first
// time, and rekeys it at the first reopen: every check after a reopen
// reads a corpus rekeyed from what the steps before it built.
func openRekeyed(tb testing.TB, dir string) storetest.Backend {
	tb.Helper()
	keyFile := filepath.Join(dir, "index.key")
	o := options(1024)
	switch _, err := os.Stat(keyFile); {
	case err == nil:
		key, err := store.ReadIndexKey(keyFile)
		if err != nil {
			tb.Fatal(err)
		}
		o.IndexKey = key
	case errors.Is(err, os.ErrNotExist):
		if _, err := os.Stat(store.EmailDir(dir)); err == nil {
			key, err := store.GenerateIndexKey(keyFile)
			if err != nil {
				tb.Fatal(err)
			}
			if _, err := store.Rekey(context.Background(), dir, key, o); err != nil {
				tb.Fatalf("Rekey = %v", err)
			}
			o.IndexKey = key
		}
	default:
		tb.Fatal(err)
	}
	return open(tb, store.EmailDir(dir), o)
}

// privateBackend runs the suite on a private corpus (keyed, with private
// rows), answering every lookup with a private check as a client makes it:
// blinded at the prefix length the corpus advertises, then matched.
type privateBackend struct{ *store.Store }

func openPrivateBackend(tb testing.TB, dir string) storetest.Backend {
	tb.Helper()
	keyFile := filepath.Join(dir, "index.key")
	key, err := store.ReadIndexKey(keyFile)
	if errors.Is(err, os.ErrNotExist) {
		key, err = store.GenerateIndexKey(keyFile)
	}
	if err != nil {
		tb.Fatal(err)
	}
	o := options(1024)
	o.IndexKey, o.Private, o.BucketMin = key, true, 4
	return &privateBackend{open(tb, store.EmailDir(dir), o)}
}

func (p *privateBackend) Lookup(ctx context.Context, d breachd.Digest) ([]*breachd.CatalogEntry, uint64, error) {
	for {
		info, err := p.PrivateInfo(ctx)
		if errors.Is(err, breachd.ErrUnavailable) { // the buckets' first count, at open
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		r, err := blind.New(d, info.PrefixBits)
		if err != nil {
			return nil, 0, err
		}
		a, err := p.PrivateCheck(ctx, r.Query)
		if errors.Is(err, breachd.ErrStalePrefix) { // recounted since PrivateInfo
			continue
		}
		if errors.Is(err, breachd.ErrUnavailable) { // a delete since: checks wait for the count
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		bs, err := r.Match(a)
		return bs, a.CorpusVersion, err
	}
}

func (p *privateBackend) LookupBatch(ctx context.Context, packed []byte, hit func(int, []*breachd.CatalogEntry)) (uint64, error) {
	return oneByOne(ctx, packed, hit, p.Lookup)
}

// oneByOne answers a batch through lookup, one digest at a time, and again
// until every answer is of one version, as a batch's are.
func oneByOne(ctx context.Context, packed []byte, hit func(int, []*breachd.CatalogEntry),
	lookup func(context.Context, breachd.Digest) ([]*breachd.CatalogEntry, uint64, error)) (uint64, error) {
	type answer struct {
		i  int
		bs []*breachd.CatalogEntry
	}
	for {
		var version uint64
		var hits []answer
		same := true
		for i := 0; i < len(packed)/breachd.DigestSize && same; i++ {
			bs, v, err := lookup(ctx, breachd.Digest(packed[i*breachd.DigestSize:]))
			if err != nil {
				return 0, err
			}
			if i == 0 {
				version = v
			}
			same = v == version
			if len(bs) > 0 {
				hits = append(hits, answer{i, bs})
			}
		}
		if same {
			for _, h := range hits {
				hit(h.i, h.bs)
			}
			return version, nil
		}
	}
}

// passwordBackend runs the suite on a password corpus: an account is the
// first bytes of its digest, imported with a count of 1, and it is "in" the
// releases whose committed entries hold it.
type passwordBackend struct{ *store.Passwords }

func (p *passwordBackend) Lookup(ctx context.Context, d breachd.Digest) ([]*breachd.CatalogEntry, uint64, error) {
	return p.BreachesOf(ctx, d[:])
}

func (p *passwordBackend) LookupBatch(ctx context.Context, packed []byte, hit func(int, []*breachd.CatalogEntry)) (uint64, error) {
	return oneByOne(ctx, packed, hit, p.Lookup)
}

func (p *passwordBackend) Import(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.Digest, error]) (breachd.ImportStats, error) {
	st, err := p.Passwords.Import(ctx, b, 0, func(yield func([]breachd.PasswordRecord, error) bool) {
		for ds, err := range batches {
			rs := make([]breachd.PasswordRecord, len(ds))
			for i := range ds {
				copy(rs[i].Hash[:], ds[i][:])
				rs[i].Count = 1
			}
			if !yield(rs, err) {
				return
			}
		}
	})
	return breachd.ImportStats{Breach: st.Release, Received: st.Received, Duplicates: st.Received - st.NewHashes - st.UpdatedHashes,
		NewAccounts: st.NewHashes, KnownAccounts: st.UpdatedHashes, Version: st.Version}, err
}

// followerBackend runs the suite on a read replica: every change is made
// on its writer, then shipped as a Badger backup of what changed and
// applied; lookups and the catalogue are the follower's.
type followerBackend struct {
	*store.Store // the follower
	writer       *store.Store
	state        string // where the last backup's end is kept across a reopen
	upto         uint64
}

func openFollower(tb testing.TB, dir string, index store.IndexMode) storetest.Backend {
	return openFollowerDelta(tb, dir, index, 0)
}

// openFollowerDelta is openFollower with the follower's delta bound set
// (0: the default): a backup over it is spilled to runs.
func openFollowerDelta(tb testing.TB, dir string, index store.IndexMode, delta int) storetest.Backend {
	tb.Helper()
	fo := store.WithMaxDelta(options(1024), delta)
	fo.Follower, fo.Index = true, index
	f := &followerBackend{writer: open(tb, filepath.Join(dir, "writer"), options(1024)), state: filepath.Join(dir, "upto")}
	f.Store = open(tb, filepath.Join(dir, "follower"), fo)
	if b, err := os.ReadFile(f.state); err == nil && len(b) == 8 {
		f.upto = binary.BigEndian.Uint64(b)
	}
	return f
}

// ship applies to the follower what changed on the writer since the last
// backup, as natsrepl does.
func (f *followerBackend) ship(ctx context.Context) error {
	var buf bytes.Buffer
	info, err := f.writer.Backup(ctx, &buf, f.upto)
	if err != nil {
		return err
	}
	if _, err := f.Store.ApplyBackup(ctx, &buf, info.Keys); err != nil {
		return err
	}
	f.upto = info.Upto
	return os.WriteFile(f.state, binary.BigEndian.AppendUint64(nil, f.upto), 0o600)
}

func (f *followerBackend) Import(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.Digest, error]) (breachd.ImportStats, error) {
	st, err := f.writer.Import(ctx, b, batches)
	// An abandoned import ships too: its rows, invisible.
	return st, errors.Join(err, f.ship(context.Background()))
}

func (f *followerBackend) DeleteBreach(ctx context.Context, name string) (uint64, uint64, error) {
	removed, v, err := f.writer.DeleteBreach(ctx, name)
	if err != nil {
		return removed, v, err
	}
	return removed, v, f.ship(ctx)
}

func (f *followerBackend) UpdateBreach(ctx context.Context, b breachd.Breach) (*breachd.CatalogEntry, uint64, error) {
	e, v, err := f.writer.UpdateBreach(ctx, b)
	if err != nil {
		return e, v, err
	}
	return e, v, f.ship(ctx)
}

func (f *followerBackend) Close() error {
	return errors.Join(f.Store.Close(), f.writer.Close())
}
