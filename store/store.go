package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/breachd/breachd"
)

// Options configure a Store. Start from DefaultOptions; Open refuses invalid
// values rather than replacing them.
type Options struct {
	// Logger receives the store's own events (never digests). Nil discards them.
	Logger *slog.Logger
	// FalsePositiveRate is the Bloom filter's target rate at capacity, in (0, 1).
	FalsePositiveRate float64
	// ExpectedKeys sizes the Bloom filter before the first import (at least
	// 1). The filter is rebuilt larger when the corpus outgrows it.
	ExpectedKeys uint64
	// BlockCacheSize is Badger's block cache in bytes, 0 for none. The
	// tables are uncompressed and read through mmap, so the cache only adds
	// work (1% hit ratio under load; present lookups 15-30% faster and 5
	// allocations fewer without it, see bench/README.md).
	BlockCacheSize int64
	// BlockSize is the size of Badger's table blocks in bytes, applied to
	// tables written from now on.
	BlockSize int
	// MaxBulkDigests bounds the digests a first import (a bulk load)
	// buffers in memory, 32 bytes each; past it the import goes on through
	// ordinary write batches, slower but in bounded memory. 0 means no
	// bound (the offline importer); a daemon sets one.
	MaxBulkDigests int
	// BulkChunkDigests is how many digests a first import (a bulk load)
	// sorts in memory, 32 bytes each, before it spills them, sorted, to a
	// file in the data directory; the commit merges the files. It bounds the
	// memory of a first import of any size.
	BulkChunkDigests int
	// DiskReserve is the space, in bytes, an import must leave free on the
	// corpus's filesystem: before writing, an import checks that what it is
	// about to write fits above it, and refuses with breachd.ErrNoSpace
	// otherwise (Badger maps its files: a full disk would kill the process).
	DiskReserve int64
	// MemTableSize is the size of Badger's memtables in bytes; two of them
	// are counted in what any import may need.
	MemTableSize int64
	// BackgroundShare is the share of one core that full scans (collection
	// after a delete or an interrupted import, filter and index rebuilds)
	// may take while the store serves: they pause between chunks of rows
	// so lookups keep theirs. 1 means no pause (offline tools); the daemon
	// uses 0.5.
	BackgroundShare float64
	// Index says when the lookup index (index.go: 37 bytes a digest of
	// disk and page cache) is rebuilt after an import; IndexOff never
	// builds one.
	Index IndexMode
	// Follower opens the store as a read replica's (replica.go): it never
	// writes corpus rows of its own (no collection at open), so that the
	// writer's changes, applied with their own versions, are never
	// shadowed by local ones.
	Follower bool
	// Registerer receives the corpus gauges (accounts, breaches, version,
	// filter shape and false positives, import progress). Nil registers none.
	Registerer prometheus.Registerer

	// hook, set only by tests (export_test.go), is called at each named
	// point of the store's work (see Store.reach).
	hook func(point string)
}

// DefaultOptions returns the options the daemon uses unless told otherwise.
func DefaultOptions() Options {
	return Options{
		FalsePositiveRate: 0.001,
		ExpectedKeys:      2_000_000,
		BlockCacheSize:    0,
		BlockSize:         4 << 10,
		DiskReserve:       256 << 20,
		BulkChunkDigests:  4 << 20, // 128 MiB
		MemTableSize:      64 << 20,
		BackgroundShare:   0.5,
	}
}

// Validate reports the first invalid option as a *breachd.OptionError.
func (o Options) Validate() error {
	switch {
	case !(o.FalsePositiveRate > 0 && o.FalsePositiveRate < 1):
		return &breachd.OptionError{Option: "FalsePositiveRate", Value: o.FalsePositiveRate, Want: "a rate between 0 and 1, exclusive (e.g. 0.001)"}
	case o.ExpectedKeys < 1:
		return &breachd.OptionError{Option: "ExpectedKeys", Value: o.ExpectedKeys, Want: "at least 1"}
	case !(o.BackgroundShare > 0 && o.BackgroundShare <= 1):
		return &breachd.OptionError{Option: "BackgroundShare", Value: o.BackgroundShare, Want: "a share of one core in (0, 1]"}
	case o.BlockCacheSize < 0:
		return &breachd.OptionError{Option: "BlockCacheSize", Value: o.BlockCacheSize, Want: "0 (no cache) or more bytes"}
	case o.BlockSize < 512 || o.BlockSize > 1<<20:
		return &breachd.OptionError{Option: "BlockSize", Value: o.BlockSize, Want: "512 bytes to 1 MiB"}
	case o.DiskReserve < 0:
		return &breachd.OptionError{Option: "DiskReserve", Value: o.DiskReserve, Want: "0 or more bytes"}
	case o.MemTableSize < 1<<20 || o.MemTableSize > 1<<30:
		return &breachd.OptionError{Option: "MemTableSize", Value: o.MemTableSize, Want: "1 MiB to 1 GiB"}
	case o.BulkChunkDigests < 1:
		return &breachd.OptionError{Option: "BulkChunkDigests", Value: o.BulkChunkDigests, Want: "at least 1"}
	case o.MaxBulkDigests < 0:
		return &breachd.OptionError{Option: "MaxBulkDigests", Value: o.MaxBulkDigests, Want: "0 (no bound) or more digests"}
	}
	return nil
}

// Store is the breach corpus. It is safe for concurrent use; imports are
// serialised, lookups never wait for them.
type Store struct {
	db   *badger.DB
	dir  string
	log  *slog.Logger
	opts Options

	// Published state. Each is replaced whole and never changed once
	// stored, so lookups read it without locks. A commit stores the filter
	// before the catalogue, and lookups load the catalogue before the
	// filter: a lookup that sees a segment also sees its digests.
	filter atomic.Pointer[filter]
	cat    atomic.Pointer[catalog]
	keys   atomic.Uint64 // distinct digests in committed breaches

	importSem chan struct{} // holds one token while an import runs

	// closeMu is held for reading by every call that touches Badger, so
	// Close waits for them. closed is also read without it on the lookup fast
	// path, which touches only the filter.
	closeMu sync.RWMutex
	closed  atomic.Bool

	serving       atomic.Bool // Open has finished: pace full scans
	readOnly      error       // non-nil: opened read-only on a nearly full disk; why
	recount       bool        // the saved filter's count is ahead of the corpus: collect recounts
	pendingAtOpen bool        // Open found records of interrupted imports: collect them
	// Background work (collections, the index loop) runs on bgCtx, the
	// store's lifetime: a caller's context never cancels it. Close cancels
	// it and waits for bg; bgMu guards bgClosing, after which nothing new
	// is started (Add must not race Close's Wait).
	bgCtx     context.Context
	bgCancel  context.CancelFunc
	bg        sync.WaitGroup
	bgMu      sync.Mutex
	bgClosing bool

	falsePositives atomic.Uint64 // filter "maybe"s that Badger did not confirm
	importReceived atomic.Uint64 // digests the running import has received
	pageOutFailed  bool          // pageOutTables said once that it cannot; under the import token
	imports        *prometheus.CounterVec

	// The lookup index (index.go). view is read without locks; idxMu is
	// held for reading while a lookup reads the index it names, so that
	// retire can unmap a replaced one. viewMu orders view changes.
	view      atomic.Pointer[view]
	idxMu     sync.RWMutex
	viewMu    sync.Mutex
	current   *index        // the index of the view, or the last published one
	indexKick chan struct{} // asks indexLoop for a rebuild
	// Index builds run beside Collect (which only holds the import token
	// against imports): Collect leaves alone the temporary files they are
	// writing, named here while they are.
	tmpMu       sync.Mutex
	writingTmps map[string]bool
}

// badgerOptions are the Badger options of a corpus in dir (the email
// corpus and each password corpus alike).
func badgerOptions(dir string, opts Options) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(badgerLogger{opts.Logger}).
		WithCompression(options.None). // digests and hashes are random: nothing to compress
		WithBlockCacheSize(opts.BlockCacheSize).
		WithBlockSize(opts.BlockSize).
		WithMemTableSize(opts.MemTableSize).
		// A bulk load writes tables of the last level's size (the base
		// size times 2^5), and Badger's StreamWriter lets up to 16 of them
		// be built in memory ahead of the disk. With the default 2 MiB
		// base they are 64 MiB, and a 100M-digest first import peaked at
		// 1.92 GiB of anonymous memory; with 512 KiB (16 MiB tables, 339
		// of them at 100M) it peaked at 1.38 GiB, in as much time. Later
		// imports took as long either way (3 alternated runs).
		WithBaseTableSize(512 << 10).
		WithValueThreshold(64 << 10). // values are a few bytes a segment: always in the LSM tree
		WithNumVersionsToKeep(1).
		WithDetectConflicts(false). // the store serialises its writers itself
		WithMetricsEnabled(false)
}

// removeEmptyValueLogs removes the value log files of no bytes in dir. A
// process killed just after Badger created one (before it wrote the file's
// header) leaves it so, and Badger then refuses to open the directory
// ("Open existing file ... Create a new file": it takes an empty file for
// one it must create, and fails). Such a file holds nothing.
func removeEmptyValueLogs(dir string, log *slog.Logger) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	for _, p := range logs {
		if fi, err := os.Stat(p); err == nil && fi.Size() == 0 {
			if err := os.Remove(p); err == nil {
				log.Warn("removed an empty value log file a crash left", "file", filepath.Base(p))
			}
		}
	}
}

// Open opens (creating if needed) the corpus in dir. Rebuilding the Bloom
// filter, when the saved one does not match the data, stops when ctx is done.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	bo := badgerOptions(dir, opts)
	// On a filesystem with less than the reserve free, Badger could meet a
	// full disk in a memory-mapped write (a SIGBUS): open read-only and serve.
	readOnly := lowOnSpace(dir, opts.DiskReserve)
	if readOnly != nil {
		bo = bo.WithReadOnly(true)
		opts.Logger.Warn("disk nearly full: opening the corpus read-only; imports, deletes and collections are refused until space is freed and the daemon restarted",
			"dir", dir, "reserve_mib", opts.DiskReserve>>20)
	}
	removeEmptyValueLogs(dir, opts.Logger)
	db, err := badger.Open(bo)
	if err != nil {
		if readOnly != nil {
			return nil, fmt.Errorf("open %s: %w; and the store cannot be opened read-only either: %v", dir, readOnly, err)
		}
		return nil, classify("open "+dir, err)
	}
	s := &Store{db: db, dir: dir, log: opts.Logger, opts: opts, readOnly: readOnly, importSem: make(chan struct{}, 1),
		imports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "breachd_imports_total",
			Help: "Imports that ended, by result: committed or abandoned."}, []string{"result"})}
	if err := s.loadCatalog(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.loadOrRebuildFilter(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if opts.Registerer != nil {
		if err := s.registerMetrics(opts.Registerer); err != nil {
			db.Close()
			return nil, err
		}
	}
	// What interrupted imports or deletes left is collected in the
	// background: answers are right meanwhile, and changes wait for it.
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	collect := false
	if s.readOnly == nil && !opts.Follower {
		// Nothing writes temporary files yet: whatever is there, a crash left.
		s.removeTemps()
		collect = s.needsCollect()
	}
	s.serving.Store(true) // from here, full scans are paced (Options.BackgroundShare)
	s.openIndex(ctx, s.bgCtx)
	if collect {
		s.importSem <- struct{}{} // free: nothing else runs yet
		s.handOff(func() { <-s.importSem }, "collecting what interrupted imports or deletes left", func(ctx context.Context) error {
			_, err := s.collectOutstanding(ctx)
			return err
		})
	}
	return s, nil
}

// handOff runs work that must finish once started, whoever asked for it (a
// deleted breach's collection, an abandoned import's), on the store's
// background context, holding a call slot; release (the import token's)
// is called when it ends, so that the next change waits for it. A caller
// that stops waiting does not stop it; Close does, and what it left is
// recorded on disk and resumed at the next Open. The channel gets its
// result.
func (s *Store) handOff(release func(), what string, work func(ctx context.Context) error) <-chan error {
	out := make(chan error, 1)
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.bgClosing {
		release()
		out <- breachd.ErrClosed
		return out
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer release()
		err := s.acquire()
		if err == nil {
			err = work(s.bgCtx)
			s.release()
		}
		if err != nil && s.bgCtx.Err() == nil {
			s.log.Warn(what+" failed; what it left is invisible and collected at the next start", "err", err)
		}
		out <- err
	}()
	return out
}

func (s *Store) loadCatalog() error {
	c, err := s.readCatalog()
	if err != nil {
		return err
	}
	s.cat.Store(c)
	return nil
}

// readCatalog reads the committed catalogue from Badger.
func (s *Store) readCatalog() (*catalog, error) {
	breaches := map[string]*breachd.CatalogEntry{}
	segs := map[uint32]string{}
	var version, importVersion uint64
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		if version, err = getUint64(txn, keyVersion); err != nil {
			return err
		}
		if importVersion, err = getUint64(txn, keyImportVersion); err != nil {
			return err
		}
		err = scan(txn, tagBreach, func(_ []byte, v []byte) error {
			var r breachRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: breach record: %v", ErrCorrupt, err)
			}
			breaches[r.Name] = &breachd.CatalogEntry{Breach: r.Breach, AccountCount: r.AccountCount}
			return nil
		})
		if err != nil {
			return err
		}
		return scan(txn, tagSegment, func(k []byte, v []byte) error {
			var r segmentRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: segment record: %v", ErrCorrupt, err)
			}
			if r.Committed {
				segs[binary.BigEndian.Uint32(k[1:])] = r.Breach
			} else {
				s.pendingAtOpen = true // an interrupted import: collect at open
			}
			return nil
		})
	})
	if err != nil {
		return nil, classify("load catalogue", err)
	}
	if importVersion == 0 || importVersion > version {
		importVersion = version // a corpus from before the key was written: assume the last change added digests
	}
	return newCatalog(version, importVersion, breaches, segs), nil
}

// scan calls fn for every key and value under a one-byte keyspace tag.
func scan(txn *badger.Txn, tag byte, fn func(k, v []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte{tag}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
			return err
		}
	}
	return nil
}

// loadOrRebuildFilter uses the saved filter when it was saved at the corpus
// version on disk, and rebuilds it from Badger otherwise. A filter saved at a
// commit holds every digest of every committed breach, so rows that an
// interrupted import left behind (invisible, since never committed) do not
// make it stale.
func (s *Store) loadOrRebuildFilter(ctx context.Context) error {
	f, h, err := loadFilter(s.dir)
	c := s.cat.Load()
	reason := ""
	switch {
	case errors.Is(err, errNoFilter):
		reason = "no saved filter"
	case err != nil:
		reason = "saved filter unreadable: " + err.Error()
	case h.corpusVersion < c.version:
		reason = "saved filter is older than the corpus"
	case h.fpr != s.opts.FalsePositiveRate:
		reason = "false-positive rate changed"
	case h.keys > h.capacity:
		reason = "saved filter is over capacity"
	}
	if reason == "" {
		s.filter.Store(f)
		s.keys.Store(h.keys)
		if h.corpusVersion > c.version {
			// Saved for a commit that a crash stopped: the filter holds more
			// than is committed (harmless), its count does not match; the
			// collection at open recounts.
			s.recount = true
			if c.version == 0 {
				s.keys.Store(0)
			}
		}
		s.log.Info("bloom filter loaded", "keys", h.keys)
		return nil
	}
	if c.version == 0 { // nothing committed: nothing to rebuild from
		s.filter.Store(newFilter(s.opts.ExpectedKeys, s.opts.FalsePositiveRate))
		return nil
	}
	s.log.Warn("rebuilding bloom filter from data", "reason", reason)
	f, n, err := s.rebuildFilter(ctx, c, 0)
	if err != nil {
		return err
	}
	s.filter.Store(f)
	s.keys.Store(n)
	if s.readOnly != nil {
		return nil
	}
	if err := s.saveFilter(); err != nil {
		s.log.Warn("saving bloom filter failed; it will be rebuilt at next start", "err", err)
	}
	return nil
}

// rebuildFilter builds a new filter from every stored digest, sized for at
// least minCap keys, and returns it with the number of digests that belong
// to a breach committed in c. It adds the rows of pending imports too: a
// superset is always safe, and the running import needs its own rows in.
// Callers hold the import token or are in Open: no digest is written meanwhile.
func (s *Store) rebuildFilter(ctx context.Context, c *catalog, minCap uint64) (*filter, uint64, error) {
	start := time.Now()
	var stored uint64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tagEmail}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			stored++
		}
		return nil
	})
	if err != nil {
		return nil, 0, classify("count digests", err)
	}
	capacity := max(s.opts.ExpectedKeys, 2*stored, minCap)
	f := newFilter(capacity, s.opts.FalsePositiveRate)
	var visible uint64
	err = s.eachDigest(ctx, func(item *badger.Item, v []byte) error {
		f.add(item.Key()[1:])
		if c.visible(v) {
			visible++
		}
		return nil
	})
	if err != nil {
		return nil, 0, classify("rebuild filter", err)
	}
	s.log.Info("bloom filter rebuilt", "keys", stored, "committed_keys", visible, "capacity", capacity, "duration", time.Since(start))
	return f, visible, nil
}

// eachDigest calls fn for every digest row with its membership value (valid
// only during the call), checking ctx as it goes.
func (s *Store) eachDigest(ctx context.Context, fn func(item *badger.Item, val []byte) error) error {
	return s.eachDigestSince(ctx, 0, fn)
}

// eachDigestSince is eachDigest for the rows written after Badger version
// since (all of them for 0): Badger skips the tables that hold none.
func (s *Store) eachDigestSince(ctx context.Context, since uint64, fn func(item *badger.Item, val []byte) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{tagEmail}, SinceTs: since})
		defer it.Close()
		var i int
		p := s.pacer()
		for it.Rewind(); it.Valid(); it.Next() {
			if i++; i%4096 == 0 {
				if err := p.step(ctx); err != nil {
					return err
				}
			}
			item := it.Item()
			if err := item.Value(func(v []byte) error { return fn(item, v) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// saveFilter saves the published filter. Callers hold the import token, or
// are closing the store: the filter and catalogue do not change meanwhile.
func (s *Store) saveFilter() error {
	return s.saveFilterAt(s.filter.Load(), s.cat.Load().version, s.keys.Load())
}

// saveFilterAt saves f as the filter of corpus version v with keys committed
// digests. A change to the corpus saves its filter at the version it is
// about to commit, before committing: a filter holds every digest committed
// at its version and all before (it never loses a bit), so after a crash on
// either side of the commit the saved filter is still valid and no rebuild
// is needed.
func (s *Store) saveFilterAt(f *filter, v, keys uint64) error {
	return f.save(s.dir, filterHeader{corpusVersion: v, keys: keys})
}

// acquire marks a call in flight; it fails once the store is closed.
func (s *Store) acquire() error {
	s.closeMu.RLock()
	if s.closed.Load() {
		s.closeMu.RUnlock()
		return breachd.ErrClosed
	}
	return nil
}

func (s *Store) release() { s.closeMu.RUnlock() }

// Close waits for calls in flight, saves the Bloom filter and closes Badger.
// An import still running is abandoned: its rows stay invisible.
//
// On a disk with less than the reserve free (filled by something else while
// the store served), closing Badger would flush its memtable through a
// memory map into the full disk: a SIGBUS. Close then leaves Badger as a
// crash would, its write-ahead log intact for the next Open to replay (the
// crash harness checks that this loses nothing), and returns an error
// wrapping breachd.ErrNoSpace. The directory stays locked until the process
// exits.
func (s *Store) Close() error {
	s.bgMu.Lock()
	s.bgClosing = true
	s.bgMu.Unlock()
	s.bgCancel()
	s.bg.Wait()
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Load() {
		return breachd.ErrClosed
	}
	s.closed.Store(true)
	s.viewMu.Lock()
	s.view.Store(nil)
	if s.current != nil {
		s.retire(s.current)
		s.current = nil
	}
	s.viewMu.Unlock()
	var errs []error
	if s.readOnly == nil {
		if err := s.saveFilter(); err != nil {
			errs = append(errs, fmt.Errorf("save bloom filter: %w", err))
		}
	}
	if s.readOnly == nil {
		if err := lowOnSpace(s.dir, s.opts.DiskReserve); err != nil {
			s.log.Error("disk nearly full at close: leaving Badger's write-ahead log for the next start instead of flushing it", "dir", s.dir)
			return errors.Join(append(errs, fmt.Errorf("close: %w", err))...)
		}
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, classify("close badger", err))
	}
	return errors.Join(errs...)
}

// ReadOnly returns why the store was opened read-only (a nearly full disk,
// an error wrapping breachd.ErrNoSpace), or nil if it takes writes.
func (s *Store) ReadOnly() error { return s.readOnly }

// Importing reports whether an import is running.
func (s *Store) Importing() bool { return len(s.importSem) > 0 }

// Version returns the corpus version: it grows by one with every committed import.
func (s *Store) Version() uint64 { return s.cat.Load().version }

// Breaches returns the catalogue ordered by name, and its version.
func (s *Store) Breaches(ctx context.Context) ([]*breachd.CatalogEntry, uint64, error) {
	if s.closed.Load() {
		return nil, 0, breachd.ErrClosed
	}
	c := s.cat.Load()
	return c.sorted, c.version, nil
}

// Breach returns one catalogue entry, or an error wrapping breachd.ErrUnknownBreach.
func (s *Store) Breach(ctx context.Context, name string) (*breachd.CatalogEntry, uint64, error) {
	if s.closed.Load() {
		return nil, 0, breachd.ErrClosed
	}
	c := s.cat.Load()
	b := c.byName[name]
	if b == nil {
		return nil, c.version, fmt.Errorf("%w %s", breachd.ErrUnknownBreach, breachd.Quote(name))
	}
	return b, c.version, nil
}

// Stats describes the corpus.
type Stats struct {
	Keys     uint64 // distinct digests in committed breaches
	Version  uint64
	Breaches int
	Filter   FilterStats
	LSMBytes int64 // Badger's LSM tree size on disk
	VLogSize int64 // Badger's value log size on disk
	Index    IndexStats
}

// IndexStats describe the lookup index (index.go).
type IndexStats struct {
	// Current reports whether lookups read the index (else they confirm in
	// Badger, until a rebuild after an import completes).
	Current bool
	Digests uint64 // digests in the index in use, or last built
	Version uint64 // corpus version it was built at
	Sets    int    // distinct membership sets
}

// Stats returns the corpus's size and the filter's shape.
func (s *Store) Stats() Stats {
	c := s.cat.Load()
	keys := s.keys.Load()
	lsm, vlog := s.db.Size()
	fs := s.filter.Load().stats(keys)
	fs.FalsePositives = s.falsePositives.Load()
	st := Stats{Keys: keys, Version: c.version, Breaches: len(c.sorted), Filter: fs, LSMBytes: lsm, VLogSize: vlog}
	s.viewMu.Lock()
	if v := s.view.Load(); v != nil {
		st.Index = IndexStats{Current: v.cat == s.cat.Load(), Digests: v.idx.n, Version: v.idx.version, Sets: len(v.idx.sets)}
	}
	s.viewMu.Unlock()
	return st
}

// badgerLogger routes Badger's logs into slog under one constant message;
// Badger's text goes in "detail" (a second "msg" key would make JSON
// handlers write two). Its informational chatter goes to debug level.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) log(level slog.Level, f string, a []any) {
	if b.l.Enabled(context.Background(), level) {
		b.l.Log(context.Background(), level, "badger", "detail", fmt.Sprintf(f, a...))
	}
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug, f, a) }

// reach marks a named point of the store's work: tests stop or cancel
// work there (Options.hook), and the crash harness's child kills itself
// (crashPoint).
func (s *Store) reach(point string) {
	if s.opts.hook != nil {
		s.opts.hook(point)
	}
	reach(point)
}

// pacer keeps a full scan to a share of one core: after each chunk of work
// it sleeps in proportion to the time the chunk took.
type pacer struct {
	share float64
	mark  time.Time
}

// pacer returns the pacer for a scan starting now: nil (no pauses) while
// the store opens, or with BackgroundShare 1.
func (s *Store) pacer() *pacer {
	if !s.serving.Load() || s.opts.BackgroundShare >= 1 {
		return nil
	}
	return &pacer{share: s.opts.BackgroundShare, mark: time.Now()}
}

// step ends a chunk: it pauses, and fails if ctx ends.
func (p *pacer) step(ctx context.Context) error {
	if err := ctx.Err(); err != nil || p == nil {
		return err
	}
	pause := time.Duration(float64(time.Since(p.mark)) * (1/p.share - 1))
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mark = time.Now()
	return nil
}
