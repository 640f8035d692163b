package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/ristretto/v2/z"

	"github.com/breachd/breachd"
)

// Passwords is the corpus of one password hash kind (SHA-1 or NTLM): each
// hash with its prevalence count, and nothing else. It lives in a Badger of
// its own beside the email corpus (PasswordDir), with its own Bloom filter
// and corpus version, and keeps the email corpus's guarantees: exact
// answers (the filter only says "no"), releases that become visible all at
// once, and a saved filter that survives a crash without a rebuild.
//
// A release is imported as a segment, as a breach is: every row it touches
// gains an entry (segment id, count) beside the entry it had, and lookups
// answer the highest count of the committed entries. Until the commit the
// old entry answers; after it both do. So a new release merges into the
// corpus (hashes it lacks keep their count, counts it raises rise, and a
// small list imported beside it never lowers one) with no window of wrong
// answers. The next import, or the collection at open, collapses the
// committed entries into one and drops those never committed.
type Passwords struct {
	kind      breachd.HashKind
	dir       string
	db        *badger.DB
	log       *slog.Logger
	opts      Options
	readOnly  error
	importSem chan struct{}
	closeMu   sync.RWMutex
	closed    atomic.Bool
	filter    atomic.Pointer[filter]
	state     atomic.Pointer[pwState]
	keys      atomic.Uint64 // hashes with a committed count
	pending   bool          // Open found an interrupted import
	bg        sync.WaitGroup
	bgCancel  context.CancelFunc
}

// pwState is an immutable snapshot of a password corpus's catalogue.
type pwState struct {
	version   uint64
	committed map[uint32]bool // committed segments
	releases  []*PasswordRelease
}

// PasswordRelease is one imported release of a password corpus.
type PasswordRelease struct {
	breachd.Breach
	// Hashes is how many hashes the release carried.
	Hashes uint64 `json:"Hashes"`
}

// Password keyspaces: the same tags as the email corpus where they mean
// the same thing, in a database of their own.
const (
	tagHash    = 'h' // 'h' + hash -> entries of (segment uint32, count uint64), big-endian
	pwEntry    = 12
	pwMaxEntry = 1 << 8 // entries a row may carry; far more means corruption
)

// PasswordDir is where the corpus of kind k lives inside a data directory.
func PasswordDir(dataDir string, k breachd.HashKind) string {
	return filepath.Join(dataDir, "passwords-"+k.String())
}

// OpenPasswords opens (creating if needed) the corpus of kind k in dataDir.
func OpenPasswords(ctx context.Context, dataDir string, k breachd.HashKind, opts Options) (*Passwords, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if k.Size() == 0 {
		return nil, breachd.Errorf(breachd.ErrInvalidArgument, "unknown hash kind %d", k)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	dir := PasswordDir(dataDir, k)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, classify("create "+dir, err)
	}
	bo := badgerOptions(dir, opts)
	readOnly := lowOnSpace(dir, opts.DiskReserve)
	if readOnly != nil {
		bo = bo.WithReadOnly(true)
	}
	removeEmptyValueLogs(dir, opts.Logger)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, classify("open "+dir, err)
	}
	p := &Passwords{kind: k, dir: dir, db: db, log: opts.Logger.With("corpus", k.String()), opts: opts,
		readOnly: readOnly, importSem: make(chan struct{}, 1)}
	if err := p.loadState(); err != nil {
		db.Close()
		return nil, err
	}
	if err := p.loadOrRebuildFilter(ctx); err != nil {
		db.Close()
		return nil, err
	}
	bgCtx, cancel := context.WithCancel(context.Background())
	p.bgCancel = cancel
	if p.pending && readOnly == nil && !opts.Follower {
		p.bg.Add(1)
		go func() {
			defer p.bg.Done()
			if _, err := p.Collect(bgCtx); err != nil && bgCtx.Err() == nil {
				p.log.Warn("collecting what an interrupted import left failed; it stays invisible and is tried at the next start", "err", err)
			}
		}()
	}
	return p, nil
}

// Kind returns the corpus's hash kind.
func (p *Passwords) Kind() breachd.HashKind { return p.kind }

// Version returns the corpus version: one more with every committed release.
func (p *Passwords) Version() uint64 { return p.state.Load().version }

// Hashes returns how many hashes have a committed count.
func (p *Passwords) Hashes() uint64 { return p.keys.Load() }

// Releases returns the committed releases, ordered by name.
func (p *Passwords) Releases() []*PasswordRelease { return p.state.Load().releases }

func (p *Passwords) loadState() error {
	st, err := p.readState()
	if err != nil {
		return err
	}
	p.state.Store(st)
	return nil
}

// readState reads the committed catalogue from Badger.
func (p *Passwords) readState() (*pwState, error) {
	st := &pwState{committed: map[uint32]bool{}}
	err := p.db.View(func(txn *badger.Txn) error {
		var err error
		if st.version, err = getUint64(txn, keyVersion); err != nil {
			return err
		}
		if err := scan(txn, tagBreach, func(_, v []byte) error {
			var r PasswordRelease
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: release record: %v", ErrCorrupt, err)
			}
			st.releases = append(st.releases, &r)
			return nil
		}); err != nil {
			return err
		}
		return scan(txn, tagSegment, func(k, v []byte) error {
			var r segmentRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: segment record: %v", ErrCorrupt, err)
			}
			if r.Committed {
				st.committed[binary.BigEndian.Uint32(k[1:])] = true
			} else {
				p.pending = true
			}
			return nil
		})
	})
	if err != nil {
		return nil, classify("load password catalogue", err)
	}
	return st, nil
}

// filterKey spreads a hash over the 32 bytes the filter reads: the hash's
// own (random) bytes, then words mixed from them.
func filterKey(h []byte) [32]byte {
	var k [32]byte
	copy(k[:], h)
	w0 := binary.LittleEndian.Uint64(h)
	w1 := binary.LittleEndian.Uint64(h[8:])
	for i := len(h); i < 32; i += 8 {
		w0 = mix64(w0 ^ w1 ^ uint64(i))
		w1 = bits.RotateLeft64(w1, 29) + w0
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], w0)
		copy(k[i:], b[:])
	}
	return k
}

// mix64 is SplitMix64's finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (p *Passwords) loadOrRebuildFilter(ctx context.Context) error {
	f, h, err := loadFilter(p.dir)
	st := p.state.Load()
	reason := ""
	switch {
	case errors.Is(err, errNoFilter):
		reason = "no saved filter"
	case err != nil:
		reason = "saved filter unreadable: " + err.Error()
	case h.corpusVersion < st.version:
		reason = "saved filter is older than the corpus"
	case h.keys > h.capacity+h.capacity/2: // as an import would grow it
		reason = "saved filter is over capacity"
	}
	if reason == "" {
		p.filter.Store(f)
		p.keys.Store(h.keys)
		if h.corpusVersion > st.version {
			p.pending = true // saved for a commit a crash stopped: recount
		}
		return nil
	}
	if st.version == 0 {
		p.filter.Store(newFilter(1024, p.opts.FalsePositiveRate))
		return nil
	}
	p.log.Warn("rebuilding bloom filter from data", "reason", reason)
	f, n, err := p.rebuildFilter(ctx, st, 0)
	if err != nil {
		return err
	}
	p.filter.Store(f)
	p.keys.Store(n)
	if p.readOnly == nil {
		if err := f.save(p.dir, filterHeader{corpusVersion: st.version, keys: n}); err != nil {
			p.log.Warn("saving bloom filter failed; it will be rebuilt at next start", "err", err)
		}
	}
	return nil
}

// rebuildFilter builds a filter of every stored hash (pending ones too: a
// superset is safe), sized for at least minCap, and counts the hashes with
// a committed entry in st.
func (p *Passwords) rebuildFilter(ctx context.Context, st *pwState, minCap uint64) (*filter, uint64, error) {
	start := time.Now()
	if minCap == 0 { // size it for what is stored: count first, keys only
		err := p.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tagHash}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				minCap++
			}
			return nil
		})
		if err != nil {
			return nil, 0, classify("rebuild filter", err)
		}
		minCap += minCap / 4
	}
	f := newFilter(minCap, p.opts.FalsePositiveRate)
	var stored, visible uint64
	err := p.eachRow(ctx, func(k, v []byte) error {
		stored++
		if st.count(v) > 0 {
			visible++
		}
		fk := filterKey(k[1:])
		f.add(fk[:])
		return nil
	})
	if err != nil {
		return nil, 0, classify("rebuild filter", err)
	}
	p.log.Info("bloom filter rebuilt", "hashes", stored, "committed_hashes", visible, "duration", time.Since(start))
	return f, visible, nil
}

func (p *Passwords) eachRow(ctx context.Context, fn func(k, v []byte) error) error {
	return p.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{tagHash}})
		defer it.Close()
		var i int
		for it.Rewind(); it.Valid(); it.Next() {
			if i++; i%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// count returns a row's count: the highest any committed release gave the
// hash (0 if none is committed). Counts only grow from one Pwned Passwords
// release to the next, so this is the newest release's count; and a small
// list imported beside a large corpus never lowers a count.
func (st *pwState) count(v []byte) uint64 {
	var n uint64
	for i := 0; i+pwEntry <= len(v); i += pwEntry {
		if st.committed[binary.BigEndian.Uint32(v[i:])] {
			n = max(n, binary.BigEndian.Uint64(v[i+4:]))
		}
	}
	return n
}

// collapse returns one entry that answers as v's committed entries do:
// the newest committed segment with the highest committed count; nil if
// none is committed.
func (st *pwState) collapse(v []byte) []byte {
	var best uint32
	found := false
	for i := 0; i+pwEntry <= len(v); i += pwEntry {
		if seg := binary.BigEndian.Uint32(v[i:]); st.committed[seg] {
			best, found = max(best, seg), true
		}
	}
	if !found {
		return nil
	}
	e := binary.BigEndian.AppendUint32(make([]byte, 0, pwEntry), best)
	return binary.BigEndian.AppendUint64(e, st.count(v))
}

func (p *Passwords) acquire() error {
	p.closeMu.RLock()
	if p.closed.Load() {
		p.closeMu.RUnlock()
		return breachd.ErrClosed
	}
	return nil
}

func (p *Passwords) release() { p.closeMu.RUnlock() }

func (p *Passwords) checkHash(h *breachd.PasswordHash) error {
	if h.Kind != p.kind {
		return breachd.Errorf(breachd.ErrInvalidArgument, "a %s hash asked of the %s corpus", h.Kind, p.kind)
	}
	return nil
}

// Lookup returns the count of hash h (0: not in the corpus) and the
// corpus version. The filter answers most absent hashes alone.
func (p *Passwords) Lookup(ctx context.Context, h breachd.PasswordHash) (breachd.PasswordExposure, error) {
	if err := p.checkHash(&h); err != nil {
		return breachd.PasswordExposure{}, err
	}
	if p.closed.Load() {
		return breachd.PasswordExposure{}, breachd.ErrClosed
	}
	st := p.state.Load() // before the filter, as in Store.Lookup
	fk := filterKey(h.Bytes())
	if st.version == 0 || !p.filter.Load().test(fk[:]) {
		return breachd.PasswordExposure{CorpusVersion: st.version}, nil
	}
	if err := p.acquire(); err != nil {
		return breachd.PasswordExposure{}, err
	}
	defer p.release()
	var n uint64
	err := p.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(append([]byte{tagHash}, h.Bytes()...))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			n = st.count(v)
			return nil
		})
	})
	if err != nil {
		return breachd.PasswordExposure{}, classify("get", err)
	}
	return breachd.PasswordExposure{Count: n, CorpusVersion: st.version}, nil
}

// Range calls fn, in ascending order, for every hash whose first 20 bits
// are prefix and whose count is not 0; fn's slice is valid only during
// the call. It returns the corpus version the range was read at.
func (p *Passwords) Range(ctx context.Context, prefix breachd.RangePrefix, fn func(hash []byte, count uint64)) (uint64, error) {
	if prefix >= 1<<20 {
		return 0, breachd.Errorf(breachd.ErrInvalidArgument, "range prefix %d is over 20 bits", prefix)
	}
	if err := p.acquire(); err != nil {
		return 0, err
	}
	defer p.release()
	st := p.state.Load()
	if st.version == 0 {
		return 0, nil
	}
	b0, b1, nib := byte(prefix>>12), byte(prefix>>4), byte(prefix&15)
	pre := []byte{tagHash, b0, b1}
	err := p.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: pre})
		defer it.Close()
		for it.Seek([]byte{tagHash, b0, b1, nib << 4}); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != 1+p.kind.Size() {
				return fmt.Errorf("%w: hash key of %d bytes", ErrCorrupt, len(k))
			}
			if k[3]>>4 != nib {
				break
			}
			var n uint64
			if err := item.Value(func(v []byte) error { n = st.count(v); return nil }); err != nil {
				return err
			}
			if n > 0 {
				fn(k[1:], n)
			}
		}
		return nil
	})
	if err != nil {
		return 0, classify("range", err)
	}
	return st.version, nil
}

// ReadOnly returns why the corpus was opened read-only, or nil.
func (p *Passwords) ReadOnly() error { return p.readOnly }

func (p *Passwords) takeImportToken(ctx context.Context) (func(), error) {
	if p.opts.Follower {
		return nil, ErrFollower
	}
	return p.takeToken(ctx)
}

func (p *Passwords) takeToken(ctx context.Context) (func(), error) {
	if p.readOnly != nil {
		return nil, p.readOnly
	}
	select {
	case p.importSem <- struct{}{}:
		return func() { <-p.importSem }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the running import: %w", ctx.Err())
	}
}

// Import adds release rel from batches of records (hashes of this kind,
// each with its count) and commits it, visible all at once, when batches
// ends without an error; otherwise nothing changes. A hash repeated within
// the release has its counts added (a plain password list hashed during
// import); a hash known from an earlier release answers the higher of its
// counts; hashes this release lacks keep theirs. expected, if known, sizes
// the filter of a first import.
func (p *Passwords) Import(ctx context.Context, rel breachd.Breach, expected uint64, batches iter.Seq2[[]breachd.PasswordRecord, error]) (breachd.PasswordImportStats, error) {
	stats := breachd.PasswordImportStats{Release: rel.Name, Kind: p.kind}
	if err := rel.Validate(); err != nil {
		return stats, err
	}
	done, err := p.takeImportToken(ctx)
	if err != nil {
		return stats, err
	}
	defer done()
	if err := p.acquire(); err != nil {
		return stats, err
	}
	defer p.release()
	imp := &pwImport{p: p, st: p.state.Load(), started: time.Now(), name: rel.Name}
	imp.stats = stats
	if imp.st.version == 0 {
		// A first release streams into sorted tables (see pwStream);
		// nothing committed can be lost, and lookups do not read Badger.
		if err := imp.startStream(); err != nil {
			return stats, err
		}
		defer imp.cancelStream()
	} else if err := imp.begin(rel.Name); err != nil {
		return stats, err
	}
	f, err := p.filter.Load().clone()
	if err != nil {
		return stats, err
	}
	if imp.st.version == 0 && expected > f.cap {
		f = newFilter(expected+expected/4, p.opts.FalsePositiveRate)
	}
	imp.filter = f
	p.log.Info("password import started", "release", rel.Name, "segment", imp.seg)
	for recs, err := range batches {
		if err == nil {
			err = ctx.Err()
		}
		if err == nil {
			err = imp.add(ctx, recs)
		}
		if err != nil {
			p.log.Warn("password import abandoned", "release", rel.Name, "received", imp.stats.Received)
			return imp.stats, err
		}
	}
	if imp.stats.Received == 0 {
		return imp.stats, fmt.Errorf("%w for release %s: nothing was committed", breachd.ErrEmptyImport, rel.Name)
	}
	return imp.commit(rel)
}

type pwImport struct {
	p       *Passwords
	st      *pwState
	name    string
	stream  *pwStream // a first release's bulk load, while its input comes in order
	seg     uint32
	filter  *filter
	started time.Time
	stats   breachd.PasswordImportStats
}

func (imp *pwImport) begin(name string) error {
	err := imp.p.db.Update(func(txn *badger.Txn) error {
		var err error
		if imp.seg, err = allocSegment(txn); err != nil {
			return err
		}
		return setSegment(txn, imp.seg, name, false)
	})
	return classify("begin import", err)
}

// pwBytesPerHash is the space a row may take on its way through Badger
// (write-ahead log, memtable, table), estimated high.
const pwBytesPerHash = 256

func (imp *pwImport) add(ctx context.Context, recs []breachd.PasswordRecord) error {
	p := imp.p
	if len(recs) == 0 {
		return nil
	}
	size := p.kind.Size()
	rs := slices.Clone(recs)
	if !slices.IsSortedFunc(rs, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:size], b.Hash[:size]) }) {
		slices.SortFunc(rs, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:size], b.Hash[:size]) })
	}
	// Repeats within the batch add up.
	out := rs[:0]
	for _, r := range rs {
		if r.Count == 0 || r.Count > breachd.MaxPasswordCount {
			return breachd.Errorf(breachd.ErrInvalidArgument, "a count of %d: want 1 to %d", r.Count, uint64(breachd.MaxPasswordCount))
		}
		if n := len(out); n > 0 && bytes.Equal(out[n-1].Hash[:size], r.Hash[:size]) {
			out[n-1].Count = min(out[n-1].Count+r.Count, breachd.MaxPasswordCount)
			continue
		}
		out = append(out, r)
	}
	if imp.stream != nil {
		streamed, err := imp.streamBatch(out)
		if streamed || err != nil {
			imp.stats.Received += uint64(len(recs))
			return err
		}
	}
	if err := checkSpace(p.dir, p.opts, int64(len(recs))*pwBytesPerHash, "a batch of release "+imp.stats.Release); err != nil {
		return err
	}
	imp.stats.Received += uint64(len(recs))
	keys := make([][]byte, len(out))
	vals := make([][]byte, len(out))
	fresh := make([]bool, len(out))
	err := p.db.View(func(txn *badger.Txn) error {
		for i := range out {
			k := append(make([]byte, 0, 1+size), tagHash)
			k = append(k, out[i].Hash[:size]...)
			keys[i] = k
			var old []byte
			fk := filterKey(k[1:])
			if imp.filter.test(fk[:]) {
				item, err := txn.Get(k)
				switch {
				case err == nil:
					if old, err = item.ValueCopy(nil); err != nil {
						return err
					}
					if len(old)%pwEntry != 0 || len(old) > pwMaxEntry*pwEntry {
						return fmt.Errorf("%w: password row of %d bytes", ErrCorrupt, len(old))
					}
				case !errors.Is(err, badger.ErrKeyNotFound):
					return err
				}
			}
			fresh[i] = old == nil
			vals[i] = imp.merge(old, out[i].Count)
		}
		return nil
	})
	if err != nil {
		return classify("read batch", err)
	}
	if err := writeRows(p.db, keys, vals); err != nil {
		return err
	}
	for i := range keys {
		if fresh[i] {
			fk := filterKey(keys[i][1:])
			imp.filter.add(fk[:])
		}
	}
	if total := p.keys.Load() + imp.stats.NewHashes; total > imp.filter.cap+imp.filter.cap/2 {
		nf, _, err := p.rebuildFilter(ctx, imp.st, 2*total)
		if err != nil {
			return err
		}
		imp.filter = nf
	}
	return nil
}

// merge returns the row's new value: its committed entries collapsed into
// one (which answers until the commit), and this import's entry, whose
// count adds to what this import already gave the hash. Entries of
// interrupted imports are dropped. It counts the hash as new or updated.
func (imp *pwImport) merge(old []byte, count uint64) []byte {
	repeat := false
	for i := 0; i+pwEntry <= len(old); i += pwEntry {
		if binary.BigEndian.Uint32(old[i:]) == imp.seg {
			count = min(count+binary.BigEndian.Uint64(old[i+4:]), breachd.MaxPasswordCount)
			repeat = true
		}
	}
	keep := imp.st.collapse(old)
	if !repeat {
		if keep == nil {
			imp.stats.NewHashes++
		} else {
			imp.stats.UpdatedHashes++
		}
	}
	v := make([]byte, 0, 2*pwEntry)
	v = append(v, keep...)
	v = binary.BigEndian.AppendUint32(v, imp.seg)
	return binary.BigEndian.AppendUint64(v, count)
}

func (imp *pwImport) commit(rel breachd.Breach) (breachd.PasswordImportStats, error) {
	p := imp.p
	if err := imp.endStream(); err != nil {
		return imp.stats, err
	}
	version := imp.st.version + 1
	if rel.AddedDate.IsZero() {
		rel.AddedDate = time.Now().UTC().Truncate(time.Second)
	}
	rec := &PasswordRelease{Breach: rel, Hashes: imp.stats.NewHashes + imp.stats.UpdatedHashes}
	newKeys := p.keys.Load() + imp.stats.NewHashes
	// Saved before the commit at the version it makes: valid on either
	// side of a crash (see Store.saveFilterAt).
	if err := imp.filter.save(p.dir, filterHeader{corpusVersion: version, keys: newKeys}); err != nil {
		p.log.Warn("saving bloom filter failed; it will be rebuilt at next start", "err", err)
	}
	err := p.db.Update(func(txn *badger.Txn) error {
		r, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := setSegment(txn, imp.seg, rel.Name, true); err != nil {
			return err
		}
		if err := txn.Set(breachKey(rel.Name), r); err != nil {
			return err
		}
		return txn.Set(keyVersion, binary.BigEndian.AppendUint64(nil, version))
	})
	if err == nil {
		err = p.db.Sync()
	}
	if err != nil {
		return imp.stats, classify("commit import", err)
	}
	// The filter first: a lookup that sees the new state sees its hashes.
	p.filter.Store(imp.filter)
	p.keys.Store(newKeys)
	st := &pwState{version: version, committed: maps.Clone(imp.st.committed)}
	st.committed[imp.seg] = true
	st.releases = slices.DeleteFunc(slices.Clone(imp.st.releases), func(r *PasswordRelease) bool { return r.Name == rel.Name })
	st.releases = append(st.releases, rec)
	slices.SortFunc(st.releases, func(a, b *PasswordRelease) int { return strings.Compare(a.Name, b.Name) })
	p.state.Store(st)
	imp.stats.Version = version
	p.log.Info("password import committed", "release", rel.Name, "received", imp.stats.Received,
		"new_hashes", imp.stats.NewHashes, "updated_hashes", imp.stats.UpdatedHashes,
		"corpus_version", version, "duration", time.Since(imp.started))
	return imp.stats, nil
}

// Collect drops what no committed release needs: entries of interrupted
// imports, entries superseded by a newer release, rows left with none, and
// the records of interrupted imports; and recounts the hashes. Answers do
// not change. It waits for a running import and holds off the next.
func (p *Passwords) Collect(ctx context.Context) (CollectStats, error) {
	var cs CollectStats
	done, err := p.takeImportToken(ctx)
	if err != nil {
		return cs, err
	}
	defer done()
	if err := p.acquire(); err != nil {
		return cs, err
	}
	defer p.release()
	start := time.Now()
	st := p.state.Load()
	var pending [][]byte
	err = p.db.View(func(txn *badger.Txn) error {
		return scan(txn, tagSegment, func(k, v []byte) error {
			var r segmentRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: segment record: %v", ErrCorrupt, err)
			}
			if !r.Committed {
				pending = append(pending, bytes.Clone(k))
			}
			return nil
		})
	})
	if err != nil {
		return cs, classify("collect", err)
	}
	wb := p.db.NewWriteBatch()
	defer wb.Cancel()
	var committed uint64
	err = p.eachRow(ctx, func(k, v []byte) error {
		if len(v)%pwEntry != 0 {
			return fmt.Errorf("%w: password row of %d bytes", ErrCorrupt, len(v))
		}
		keep := st.collapse(v)
		switch {
		case keep == nil:
			cs.Deleted++
			return wb.Delete(bytes.Clone(k))
		case bytes.Equal(keep, v):
			committed++
			return nil
		default:
			committed++
			cs.Rewritten++
			return wb.Set(bytes.Clone(k), keep)
		}
	})
	for _, k := range pending {
		if err == nil {
			err = wb.Delete(k)
		}
	}
	if err == nil {
		err = wb.Flush()
	}
	if err == nil {
		err = p.db.Sync()
	}
	if err != nil {
		return cs, classify("collect", err)
	}
	cs.Segments = len(pending)
	p.keys.Store(committed)
	tmps, _ := filepath.Glob(filepath.Join(p.dir, filterFile+".tmp*"))
	for _, t := range tmps {
		if os.Remove(t) == nil {
			cs.TempFiles++
		}
	}
	if cs.Segments+cs.TempFiles > 0 || cs.Rewritten+cs.Deleted > 0 {
		p.log.Info("collected", "segments", cs.Segments, "rewritten", cs.Rewritten, "deleted", cs.Deleted,
			"temp_files", cs.TempFiles, "duration", time.Since(start))
	}
	return cs, nil
}

// Close waits for calls in flight, saves the filter and closes Badger.
func (p *Passwords) Close() error {
	if p.bgCancel != nil {
		p.bgCancel()
		p.bg.Wait()
	}
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed.Load() {
		return breachd.ErrClosed
	}
	p.closed.Store(true)
	var errs []error
	if p.readOnly == nil {
		st := p.state.Load()
		if err := p.filter.Load().save(p.dir, filterHeader{corpusVersion: st.version, keys: p.keys.Load()}); err != nil {
			errs = append(errs, fmt.Errorf("save bloom filter: %w", err))
		}
		if err := lowOnSpace(p.dir, p.opts.DiskReserve); err != nil {
			p.log.Error("disk nearly full at close: leaving Badger's write-ahead log for the next start instead of flushing it", "dir", p.dir)
			return errors.Join(append(errs, fmt.Errorf("close: %w", err))...)
		}
	}
	if err := p.db.Close(); err != nil {
		errs = append(errs, classify("close badger", err))
	}
	return errors.Join(errs...)
}

// pwStream is a first release written straight into sorted tables with
// Badger's StreamWriter (no memtable, write-ahead log or compaction), as
// long as its records come in ascending order, as Pwned Passwords files
// do. The corpus is empty (version 0), so Prepare may wipe it: that also
// drops what an earlier, abandoned first import left. A record out of
// order ends the stream: what was streamed is flushed, and the rest goes
// through write batches, which merge with it.
type pwStream struct {
	sw   *badger.StreamWriter
	buf  *z.Buffer
	n    int    // records in buf
	last []byte // the last key streamed
}

const pwStreamBatch = 1 << 16

func (imp *pwImport) startStream() error {
	sw := imp.p.db.NewStreamWriter()
	if err := sw.Prepare(); err != nil {
		return classify("prepare bulk load", err)
	}
	imp.seg = bulkSegment
	imp.stream = &pwStream{sw: sw, buf: z.NewBuffer(pwStreamBatch*48, "breachd.pwbulk")}
	return nil
}

// streamBatch streams recs if they continue the stream in order, and
// reports whether it did; otherwise it ends the stream and the caller
// writes them in batches.
func (imp *pwImport) streamBatch(recs []breachd.PasswordRecord) (bool, error) {
	st, size := imp.stream, imp.p.kind.Size()
	// recs is sorted and without repeats: only its first record can fall
	// at or before what was streamed.
	if st.last != nil && bytes.Compare(recs[0].Hash[:size], st.last[1:]) <= 0 {
		imp.p.log.Info("first release out of order or with repeats; going on with write batches", "release", imp.name, "streamed", imp.stats.NewHashes)
		return false, imp.endStream()
	}
	for i := range recs {
		key := append(make([]byte, 0, 1+size), tagHash)
		key = append(key, recs[i].Hash[:size]...)
		v := binary.BigEndian.AppendUint32(make([]byte, 0, pwEntry), imp.seg)
		v = binary.BigEndian.AppendUint64(v, recs[i].Count)
		badger.KVToBuffer(&pb.KV{Key: key, Value: v, Version: 1, StreamId: 1}, st.buf)
		fk := filterKey(key[1:])
		imp.filter.add(fk[:])
		st.last = key
		if st.n++; st.n == pwStreamBatch {
			if err := imp.flushStream(); err != nil {
				return false, err
			}
		}
	}
	imp.stats.NewHashes += uint64(len(recs))
	return true, nil
}

func (imp *pwImport) flushStream() error {
	st := imp.stream
	if st.n == 0 {
		return nil
	}
	if err := checkSpace(imp.p.dir, imp.p.opts, int64(st.n)*pwBytesPerHash, "the bulk load of release "+imp.name); err != nil {
		return err
	}
	err := st.sw.Write(st.buf)
	st.buf.Release()
	st.buf, st.n = z.NewBuffer(pwStreamBatch*48, "breachd.pwbulk"), 0
	return classify("bulk load", err)
}

// endStream writes what is left of the stream and records the import's
// segment as pending, so that an abandoned import is collected.
func (imp *pwImport) endStream() error {
	if imp.stream == nil {
		return nil
	}
	if err := imp.flushStream(); err != nil {
		return err
	}
	st := imp.stream
	imp.stream = nil
	st.buf.Release()
	if err := st.sw.Flush(); err != nil {
		return classify("bulk load", err)
	}
	err := imp.p.db.Update(func(txn *badger.Txn) error {
		return setSegment(txn, imp.seg, imp.name, false)
	})
	return classify("begin import", err)
}

// cancelStream drops a stream that did not end: nothing was written.
func (imp *pwImport) cancelStream() {
	if imp.stream != nil {
		imp.stream.sw.Cancel()
		imp.stream.buf.Release()
		imp.stream = nil
	}
}
