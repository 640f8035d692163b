package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/breachd/breachd"
)

// corpus is the engine every kind of corpus runs on: one Badger of rows
// (a key and the entries of the segments that hold it), a Bloom filter
// over the keys, an immutable catalogue of committed segments, and the
// machinery around them: imports that become visible all at once,
// collection of what interrupted or deleted imports left, deletes and
// corrections, backups for replicas, pacing, metrics and the disk-space
// reserve. Store (emails) and Passwords (SHA-1, NTLM) are this engine over
// their kind, with the lookups their answers need.
type corpus struct {
	kind *kind
	db   *badger.DB
	dir  string
	// dirInfo is dir as opened: Close checks that it is still there (see
	// dirGone).
	dirInfo os.FileInfo
	log     *slog.Logger
	opts    Options

	// Published state, read by lookups without locks. The catalogue is
	// replaced whole and never changed once stored. The filter only gains
	// bits in place (filter.addLive), under the import token, or is
	// replaced whole. A commit adds its keys to the filter or stores a new
	// one before it stores the catalogue, and lookups load the catalogue
	// before the filter: a lookup that sees a segment also sees its keys.
	filter atomic.Pointer[filter]
	cat    atomic.Pointer[catalog]
	keys   atomic.Uint64 // distinct keys with an entry of a committed segment
	// strays counts keys that changes which never committed (an abandoned
	// import, a failed apply) added to the published filter, since it was
	// last replaced: they raise its false-positive rate as keys do, so
	// they count toward its growth. Forgotten at a restart.
	strays atomic.Uint64
	// saved is what the data directory holds of the filter (filterlog.go);
	// saveMu guards it.
	saveMu sync.Mutex
	saved  savedFilter

	importSem chan struct{} // holds one token while a change (import, delete, collection, a replica's apply) runs
	// commitMu is held for writing while a change's catalogue commits (its
	// Badger records, then the published catalogue), and for reading by
	// Backup, which so holds one corpus version without waiting for the
	// imports and collections that run around commits.
	commitMu sync.RWMutex

	// closeMu is held for reading by every call that touches Badger, so
	// Close waits for them. closed is also read without it on the lookup
	// fast path, which touches only the filter.
	closeMu sync.RWMutex
	closed  atomic.Bool

	serving       atomic.Bool // Open has finished: pace full scans
	readOnly      error       // non-nil: opened read-only on a nearly full disk; why
	recount       bool        // the saved filter's count is ahead of the corpus: collect recounts
	pendingAtOpen bool        // Open found records of interrupted imports: collect them

	// Background work (collections, the index loop) runs on bgCtx, the
	// corpus's lifetime: a caller's context never cancels it. Close cancels
	// it and waits for bg; bgMu guards bgClosing, after which nothing new
	// is started (Add must not race Close's Wait).
	bgCtx     context.Context
	bgCancel  context.CancelFunc
	bg        sync.WaitGroup
	bgMu      sync.Mutex
	bgClosing bool

	falsePositives atomic.Uint64 // filter "maybe"s that Badger did not confirm
	importReceived atomic.Uint64 // keys the running import has received
	pageOutFailed  bool          // pageOutTables said once that it cannot; under the import token
	imports        *prometheus.CounterVec
	private        *privateState // a keyed email corpus's (private.go); nil otherwise

	// managed: a replica's Badger, opened in managed mode so that reads
	// can be pinned to a catalogue's version (see snapshot).
	managed bool
	// tokenHolder names the change holding importSem (takeToken).
	tokenHolder atomic.Pointer[tokenHolder]

	// index is the lookup index of an indexed kind (index.go); nil otherwise.
	index *indexState
	// base is a password corpus's first release, if streamed (base.go).
	base atomic.Pointer[base]
	// committed, if set, is called after each change commits (the NATS
	// publisher's kick): see OnCommit.
	committed atomic.Pointer[func()]

	// held is a read transaction at the start of the last delta Backup
	// streamed (see hold); nil before the first Backup of a corpus that is
	// not Published. heldMu guards it.
	heldMu sync.Mutex
	held   *badger.Txn
}

// badgerOptions are the Badger options of a corpus in dir.
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
		WithDetectConflicts(false). // the corpus serialises its writers itself
		WithMetricsEnabled(false)
}

// open opens (creating if needed) the corpus of kind k in dir, into c,
// the zero corpus: Store and Passwords hold their engine by value, so that
// a lookup reaches its state with one pointer less. Rebuilding the Bloom
// filter, when the saved one does not match the data, stops when ctx is
// done.
func (c *corpus) open(ctx context.Context, dir string, k *kind, opts Options) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	log := opts.Logger.With("corpus", k.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return classify("create "+dir, err)
	}
	bo := badgerOptions(dir, opts)
	if k.counted {
		// No Bloom filter in a password corpus's tables: the corpus's own
		// filter answers absent hashes before Badger is read, and ranges
		// and counts read the lookup index. Badger's filters cost about 1.2
		// bytes a hash on disk and in mapped pages once the tables are
		// opened (85 MB of serving RSS at 100M hashes); a second release of
		// 2M hashes, half of them known, imported into 16.7M as fast
		// without them (19.9 and 24.0 s against 21.8 and 18.1 s).
		bo = bo.WithBloomFalsePositive(0)
	}
	// On a filesystem with less than the reserve free, Badger could meet a
	// full disk in a memory-mapped write (a SIGBUS): open read-only and serve.
	readOnly := lowOnSpace(dir, opts.DiskReserve)
	if readOnly != nil {
		bo = bo.WithReadOnly(true)
		log.Warn("disk nearly full: opening the corpus read-only; imports, deletes and collections are refused until space is freed and the daemon restarted",
			"dir", dir, "reserve_mib", opts.DiskReserve>>20)
	}
	removeEmptyLogs(dir, log)
	dirInfo, err := os.Stat(dir)
	if err != nil {
		return classify("open "+dir, err)
	}
	c.dirInfo = dirInfo
	openDB := func() (*badger.DB, error) {
		if opts.Follower {
			return badger.OpenManaged(bo)
		}
		return badger.Open(bo)
	}
	db, err := openLocked(ctx, openDB)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		if readOnly != nil {
			return fmt.Errorf("open %s: %w; and the corpus cannot be opened read-only either: %v", dir, readOnly, err)
		}
		return classify("open "+dir, err)
	}
	if opts.Published && !opts.Follower && readOnly == nil {
		// At once: Badger's compactors start inside Open (after a random
		// delay of up to a second).
		c.held = db.NewTransaction(false)
	}
	c.kind, c.db, c.dir, c.log, c.opts, c.readOnly, c.importSem, c.managed = k, db, dir, log, opts, readOnly, make(chan struct{}, 1), opts.Follower
	c.imports = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "breachd_imports_total",
		Help: "Imports that ended, by corpus kind and result: committed or abandoned.", ConstLabels: prometheus.Labels{"kind": k.name}},
		[]string{"result"})
	if k.indexed && opts.Index != IndexOff {
		c.index = &indexState{}
	}
	if err := c.loadCatalog(); err != nil {
		db.Close()
		return err
	}
	if err := c.openBase(); err != nil {
		db.Close()
		return err
	}
	if err := c.checkIndexKey(c.cat.Load().version); err != nil {
		db.Close()
		return err
	}
	if err := c.openPrivate(c.cat.Load().version); err != nil {
		db.Close()
		return err
	}
	if err := c.loadOrRebuildFilter(ctx); err != nil {
		db.Close()
		return err
	}
	if opts.Registerer != nil {
		if err := c.registerMetrics(opts.Registerer); err != nil {
			db.Close()
			return err
		}
	}
	// What interrupted imports or deletes left is collected in the
	// background: answers are right meanwhile, and changes wait for it.
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	collect := false
	if c.readOnly == nil && !opts.Follower {
		// Nothing writes temporary files yet: whatever is there, a crash left.
		c.removeTemps()
		collect = c.needsCollect()
	}
	if c.private != nil {
		c.goBackground(c.countBuckets)
	}
	c.serving.Store(true) // from here, full scans are paced (Options.BackgroundShare)
	if c.index != nil {
		c.openIndex(ctx)
	}
	if collect {
		c.importSem <- struct{}{} // free: nothing else runs yet
		c.handOff(func() { <-c.importSem }, "collecting what interrupted imports or deletes left", func(ctx context.Context) error {
			_, err := c.collectOutstanding(ctx)
			return err
		})
	}
	return nil
}

// removeEmptyLogs removes the value log and memtable log files of no
// bytes in dir. A process killed just after Badger created one (before it
// wrote the file's header) leaves it so, and Badger then refuses to open
// the directory ("Open existing file ... Create a new file", or "while
// opening memtables ... while opening fid: N err: Create a new file": it
// takes an empty file for one it must create, and fails). Such a file
// holds nothing.
func removeEmptyLogs(dir string, log *slog.Logger) {
	for _, pattern := range []string{"*.vlog", "*.mem"} {
		logs, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, p := range logs {
			if fi, err := os.Stat(p); err == nil && fi.Size() == 0 {
				if err := os.Remove(p); err == nil {
					log.Warn("removed an empty log file a crash left", "file", filepath.Base(p))
				}
			}
		}
	}
}

// handOff runs work that must finish once started, whoever asked for it (a
// deleted breach's collection, an abandoned import's), on the corpus's
// background context, holding a call slot; release (the import token's)
// is called when it ends, so that the next change waits for it. A caller
// that stops waiting does not stop it; Close does, and what it left is
// recorded on disk and resumed at the next open. The channel gets its
// result.
func (c *corpus) handOff(release func(), what string, work func(ctx context.Context) error) <-chan error {
	out := make(chan error, 1)
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.bgClosing {
		release()
		out <- breachd.ErrClosed
		return out
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer release()
		err := c.acquire()
		if err == nil {
			err = work(c.bgCtx)
			c.release()
		}
		if err != nil && c.bgCtx.Err() == nil {
			c.log.Warn(what+" failed; what it left is invisible and collected at the next start", "err", err)
		}
		out <- err
	}()
	return out
}

// goBackground runs fn on the corpus's background context until it ends.
func (c *corpus) goBackground(fn func(ctx context.Context)) {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.bgClosing {
		return
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		fn(c.bgCtx)
	}()
}

func (c *corpus) loadCatalog() error {
	cat, err := c.readCatalog()
	if err != nil {
		return err
	}
	c.cat.Store(cat)
	return nil
}

// readCatalog reads the committed catalogue from Badger.
func (c *corpus) readCatalog() (*catalog, error) {
	breaches := map[string]*breachd.CatalogEntry{}
	segs := map[uint32]string{}
	var version, importVersion uint64
	err := c.db.View(func(txn *badger.Txn) error {
		var err error
		if version, err = getUint64(txn, keyVersion); err != nil {
			return err
		}
		if importVersion, err = getUint64(txn, keyImportVersion); err != nil {
			return err
		}
		err = scanRecords(txn, tagBreach, func(_ []byte, v []byte) error {
			r, err := parseBreachRecord(v)
			if err != nil {
				return err
			}
			breaches[r.Name] = &breachd.CatalogEntry{Breach: r.Breach, AccountCount: r.AccountCount}
			return nil
		})
		if err != nil {
			return err
		}
		return scanRecords(txn, tagSegment, func(k []byte, v []byte) error {
			var r segmentRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: segment record: %v", ErrCorrupt, err)
			}
			if r.Committed {
				segs[binary.BigEndian.Uint32(k[1:])] = r.Breach
			} else {
				c.pendingAtOpen = true // an interrupted import: collect at open
			}
			return nil
		})
	})
	if err != nil {
		return nil, classify("load catalogue", err)
	}
	if importVersion == 0 || importVersion > version {
		importVersion = version // a corpus from before the key was written: assume the last change added keys
	}
	if c.opts.Follower {
		// On a replica every backup may add rows, those of an import its
		// writer had not committed yet too (they become visible with a
		// later catalogue, whose delta does not carry them again): an
		// index is current only if it holds every backup applied.
		importVersion = version
	}
	cat := newCatalog(c.kind, version, importVersion, breaches, segs)
	if c.managed {
		cat.readTs = c.db.MaxVersion()
	}
	return cat, nil
}

// snapshot returns a read transaction that sees the rows as catalogue cat
// describes them (the caller discards it). A writer changes rows only
// under segments no published catalogue names, or after publishing the
// catalogue that makes the change invisible, so it reads the latest. A
// replica loads a backup's rows, removals and rewrites included, before it
// publishes the catalogue they belong to, so its reads are pinned to the
// catalogue's Badger version (managed mode): a delta is visible all at
// once, whatever the lookup index's state.
func (c *corpus) snapshot(cat *catalog) *badger.Txn {
	if c.managed {
		return c.db.NewTransactionAt(cat.readTs, false)
	}
	return c.db.NewTransaction(false)
}

// readStable runs read, which reads rows (and the base) as catalogue cat
// describes them, and returns the catalogue its result is right for. A
// reader loads its catalogue before it reads, and a change may commit in
// between: a delete's collection then rewrites the rows and drops the base
// that the catalogue before it still names, since a writer reads the latest
// rows and no base is versioned (nor, on a replica, the versions compaction
// may drop behind the catalogue before last). An answer read so would be
// the new version's, given as the old one's. So while the catalogue has
// changed by the time read returns, read runs again under the new one:
// every answer is its version's. A change takes milliseconds to commit and
// a read microseconds, so a second read is rare. readStable returns what
// read's last run returned: nothing of a run under an older catalogue
// reaches the answer (a read that added to a variable outside it kept a
// row a collection had since deleted: e046aa0), and read hands nothing out
// itself.
func readStable[T any](ctx context.Context, c *corpus, cat *catalog, read func(txn *badger.Txn, cat *catalog) (T, error)) (T, *catalog, error) {
	for {
		c.reach("read-at-catalogue")
		txn := c.snapshot(cat)
		x, err := read(txn, cat)
		txn.Discard()
		if err != nil {
			return x, cat, err
		}
		now := c.cat.Load()
		if now == cat {
			return x, cat, nil
		}
		if err := ctx.Err(); err != nil {
			return x, cat, err
		}
		cat = now
	}
}

// scan calls fn for every key and value under a one-byte keyspace tag.
func scan(txn *badger.Txn, tag byte, fn func(k, v []byte) error) error {
	return scanPrefix(txn, []byte{tag}, fn)
}

// scanRecords calls fn for every catalogue record under tag (a breach's or
// a segment's), skipping deletion markers: a deleted record's key holds an
// empty value instead of being deleted (see DeleteBreach).
func scanRecords(txn *badger.Txn, tag byte, fn func(k, v []byte) error) error {
	return scan(txn, tag, func(k, v []byte) error {
		if len(v) == 0 {
			return nil
		}
		return fn(k, v)
	})
}

// scanPrefix calls fn for every key and value under prefix.
func scanPrefix(txn *badger.Txn, prefix []byte, fn func(k, v []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
			return err
		}
	}
	return nil
}

// keysUnder returns copies of the keys under prefix.
func keysUnder(txn *badger.Txn, prefix []byte) ([][]byte, error) {
	var keys [][]byte
	err := scanPrefix(txn, prefix, func(k, _ []byte) error {
		keys = append(keys, slices.Clone(k))
		return nil
	})
	return keys, err
}

// hasKey reports whether key is set (a flag's or a marker's presence), for
// op's errors.
func (c *corpus) hasKey(key []byte, op string) (bool, error) {
	var set bool
	err := c.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		set = err == nil
		return err
	})
	return set, classify(op, err)
}

// readUint64 reads the big-endian uint64 at key (0: none), for op's errors.
func (c *corpus) readUint64(key []byte, op string) (uint64, error) {
	var n uint64
	err := c.db.View(func(txn *badger.Txn) (err error) {
		n, err = getUint64(txn, key)
		return err
	})
	return n, classify(op, err)
}

// loadOrRebuildFilter uses the saved filter when it was saved at the corpus
// version on disk, and rebuilds it from Badger otherwise. A filter saved at a
// commit holds every key of every committed breach, so rows that an
// interrupted import left behind (invisible, since never committed) do not
// make it stale.
func (c *corpus) loadOrRebuildFilter(ctx context.Context) error {
	f, h, id, err := loadFilter(c.dir)
	var logSize int64
	if err == nil {
		var logErr error
		if h, logSize, logErr = replayFilterLog(c.dir, f, id, h); logErr != nil {
			err = fmt.Errorf("its log: %w", logErr)
		}
	}
	cat := c.cat.Load()
	reason := ""
	switch {
	case errors.Is(err, errNoFilter):
		reason = "no saved filter"
	case errors.Is(err, errFilterFormat):
		reason = err.Error() + " (once, after an upgrade)"
	case err != nil:
		reason = "saved filter unreadable: " + err.Error()
	case h.corpusVersion < cat.version:
		reason = "saved filter is older than the corpus"
	case h.fpr != c.opts.FalsePositiveRate:
		reason = "false-positive rate changed"
	case h.keys > h.capacity+h.capacity/2: // past what an import would let it reach
		reason = "saved filter is over capacity"
	}
	if reason == "" {
		c.filter.Store(f)
		c.saved = savedFilter{f: f, id: id, logSize: logSize, version: h.corpusVersion, keys: h.keys}
		c.keys.Store(h.keys)
		if h.corpusVersion > cat.version {
			// Saved for a commit that a crash stopped: the filter holds more
			// than is committed (harmless), its count does not match; the
			// collection at open recounts.
			c.recount = true
			if cat.version == 0 {
				c.keys.Store(0)
			}
		}
		c.log.Info("bloom filter loaded", "keys", h.keys, "log_bytes", logSize)
		return nil
	}
	if cat.version == 0 { // nothing committed: nothing to rebuild from
		c.filter.Store(newFilter(c.opts.ExpectedKeys, c.opts.FalsePositiveRate))
		return nil
	}
	c.log.Warn("rebuilding bloom filter from data", "reason", reason)
	f, n, err := c.rebuildFilter(ctx, cat, 0)
	if err != nil {
		return err
	}
	c.filter.Store(f)
	c.keys.Store(n)
	if c.readOnly != nil {
		return nil
	}
	if err := c.saveFilter(); err != nil {
		c.log.Warn("saving bloom filter failed; it will be rebuilt at next start", "err", err)
	}
	return nil
}

// rebuildFilter builds a new filter from every stored key, sized for at
// least minCap keys, and returns it with the number of keys that belong to
// a breach committed in cat. It adds the rows of pending imports too: a
// superset is always safe, and the running import needs its own rows in.
// Callers hold the import token or are in open: no key is written meanwhile.
func (c *corpus) rebuildFilter(ctx context.Context, cat *catalog, minCap uint64) (*filter, uint64, error) {
	start := time.Now()
	var stored uint64
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{c.kind.tag}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			stored++
		}
		return nil
	})
	if err != nil {
		return nil, 0, classify("count keys", err)
	}
	if b := c.getBase(); b != nil {
		stored += b.x.n // an upper bound: some are Badger's rows too
		b.put()
	}
	capacity := max(c.opts.ExpectedKeys, 2*stored, minCap)
	f := newFilter(capacity, c.opts.FalsePositiveRate)
	var visible uint64
	err = c.eachKey(ctx, cat, 0, func(key, v []byte, _ *badger.Item) error {
		fk := c.kind.filterKey(key)
		f.add(fk[:])
		if cat.visible(v) {
			visible++
		}
		return nil
	})
	if err != nil {
		return nil, 0, classify("rebuild filter", err)
	}
	c.log.Info("bloom filter rebuilt", "keys", stored, "committed_keys", visible, "capacity", capacity, "duration", time.Since(start))
	return f, visible, nil
}

// eachRow calls fn for every row, as catalogue cat sees them, written after
// Badger version since (all of them for 0: Badger skips the tables that
// hold none) with its value (valid only during the call), checking ctx and
// pacing as it goes.
func (c *corpus) eachRow(ctx context.Context, cat *catalog, since uint64, fn func(item *badger.Item, val []byte) error) error {
	size := 1 + c.kind.keySize
	txn := c.snapshot(cat)
	defer txn.Discard()
	return func() error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{c.kind.tag}, SinceTs: since})
		defer it.Close()
		var i int
		p := c.pacer()
		for it.Rewind(); it.Valid(); it.Next() {
			if i++; i%4096 == 0 {
				if err := p.step(ctx); err != nil {
					return err
				}
			}
			item := it.Item()
			if len(item.Key()) != size {
				return fmt.Errorf("%w: %s key of %d bytes", ErrCorrupt, c.kind.name, len(item.Key()))
			}
			if err := item.Value(func(v []byte) error {
				if !c.kind.validValue(v) {
					return fmt.Errorf("%w: %s row of %d bytes", ErrCorrupt, c.kind.name, len(v))
				}
				return fn(item, v)
			}); err != nil {
				return err
			}
		}
		return nil
	}()
}

// saveFilter saves the published filter. Callers hold the import token, or
// are closing: the filter and catalogue do not change meanwhile.
func (c *corpus) saveFilter() error {
	return c.saveFilterAt(c.filter.Load(), c.cat.Load().version, c.keys.Load())
}

// saveFilterAt saves f as the filter of corpus version v with keys committed
// keys. A change to the corpus saves its filter at the version it is about
// to commit, before committing: a filter holds every key committed at its
// version and all before (it never loses a bit), so after a crash on either
// side of the commit the saved filter is still valid and no rebuild is
// needed.
//
// A filter saved before (the published one, added to in place) is saved
// as a record of the blocks changed since, appended to the log beside the
// last whole save (filterlog.go), unless the log would pass its limit; a
// new filter, or one whose log is full, is saved whole.
func (c *corpus) saveFilterAt(f *filter, v, keys uint64) error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	sv := &c.saved
	if sv.f == f && f.nDirty == 0 && sv.version == v && sv.keys == keys {
		return nil
	}
	if sv.f == f && f.nDirty < math.MaxUint32 && max(sv.logSize, filterLogHdrSize)+logRecordSize(f.nDirty) <= c.filterLogLimit(f) {
		size, err := appendFilterLog(c.dir, sv.id, sv.logSize, f, v, keys)
		if err != nil {
			sv.f = nil // the next save is whole
			return fmt.Errorf("append to the filter log: %w", err)
		}
		sv.logSize, sv.version, sv.keys = size, v, keys
		f.saved()
		return nil
	}
	id, err := f.save(c.dir, filterHeader{corpusVersion: v, keys: keys})
	if err != nil {
		sv.f = nil
		return err
	}
	*sv = savedFilter{f: f, id: id, version: v, keys: keys}
	f.saved()
	return removeFilterLog(c.dir)
}

// filterLogLimit is the size past which f's log is not appended to, and
// the filter is saved whole: a quarter of the filter, so that loading
// reads at most 1.25 times it.
func (c *corpus) filterLogLimit(f *filter) int64 {
	if c.opts.filterLog != 0 {
		return c.opts.filterLog
	}
	return int64(f.blocks * blockBits / 8 / 4)
}

// saveFilterBeforeCommit is saveFilterAt for a change about to commit: a
// failure is logged, not returned (the filter is rebuilt at the next start).
func (c *corpus) saveFilterBeforeCommit(f *filter, v, keys uint64) {
	if err := c.saveFilterAt(f, v, keys); err != nil {
		c.log.Warn("saving bloom filter failed; it will be rebuilt at next start", "err", err)
	}
}

// acquire marks a call in flight; it fails once the corpus is closed.
func (c *corpus) acquire() error {
	c.closeMu.RLock()
	if c.closed.Load() {
		c.closeMu.RUnlock()
		return breachd.ErrClosed
	}
	return nil
}

func (c *corpus) release() { c.closeMu.RUnlock() }

// Close waits for calls in flight, saves the Bloom filter and closes Badger.
// An import still running is abandoned: its rows stay invisible.
//
// On a disk with less than the reserve free (filled by something else while
// the corpus served), closing Badger would flush its memtable through a
// memory map into the full disk: a SIGBUS. Close then leaves Badger as a
// crash would, its write-ahead log intact for the next open to replay (the
// crash harness checks that this loses nothing), and returns an error
// wrapping breachd.ErrNoSpace. The directory stays locked until the process
// exits.
func (c *corpus) Close() error {
	c.bgMu.Lock()
	c.bgClosing = true
	c.bgMu.Unlock()
	c.bgCancel()
	c.bg.Wait()
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed.Load() {
		return breachd.ErrClosed
	}
	c.closed.Store(true)
	if c.index != nil {
		c.closeIndex()
	}
	if err := c.dirGone(); err != nil {
		c.log.Error("the data directory was removed or replaced under the open corpus: Badger cannot flush its memtable there and would retry for ever, so it is left open; what it held since its last flush went with the directory", "dir", c.dir)
		return err
	}
	var errs []error
	if c.readOnly == nil {
		if err := c.saveFilter(); err != nil {
			errs = append(errs, fmt.Errorf("save bloom filter: %w", err))
		}
		if err := lowOnSpace(c.dir, c.opts.DiskReserve); err != nil {
			c.log.Error("disk nearly full at close: leaving Badger's write-ahead log for the next start instead of flushing it", "dir", c.dir)
			return errors.Join(append(errs, fmt.Errorf("close: %w", err))...)
		}
	}
	c.dropHold()
	if err := c.db.Close(); err != nil {
		errs = append(errs, classify("close badger", err))
	}
	c.dropBase(false)
	return errors.Join(errs...)
}

// dirGone returns an error if the corpus's directory is no longer the one
// it opened: removed (an operator's rm -r, a test's cleanup) or replaced.
// Badger's Close would then retry its memtable flush every second, for
// ever (dgraph-io/badger#664), and a daemon told to stop would hang.
func (c *corpus) dirGone() error {
	fi, err := os.Stat(c.dir)
	if err == nil && os.SameFile(fi, c.dirInfo) {
		return nil
	}
	return fmt.Errorf("close: the data directory %s is gone or replaced since the corpus was opened; not flushing to it", c.dir)
}

// ReadOnly returns why the corpus was opened read-only (a nearly full disk,
// an error wrapping breachd.ErrNoSpace), or nil if it takes writes.
func (c *corpus) ReadOnly() error { return c.readOnly }

// Importing reports whether an import (or another change) is running.
func (c *corpus) Importing() bool { return len(c.importSem) > 0 }

// Version returns the corpus version: it grows by one with every committed
// change (an import, a delete, a correction).
func (c *corpus) Version() uint64 { return c.cat.Load().version }

// OnCommit makes the corpus call fn after each change it commits (an
// import, a delete, a correction, a backup applied): a publisher of the
// corpus subscribes here. fn must not block.
func (c *corpus) OnCommit(fn func()) { c.committed.Store(&fn) }

// announce tells the subscriber, if any, that a change committed.
func (c *corpus) announce() {
	c.kickPrivate()
	if fn := c.committed.Load(); fn != nil {
		(*fn)()
	}
}

// Breaches returns the catalogue ordered by name, and its version.
func (c *corpus) Breaches(ctx context.Context) ([]*breachd.CatalogEntry, uint64, error) {
	if c.closed.Load() {
		return nil, 0, breachd.ErrClosed
	}
	cat := c.cat.Load()
	return cat.sorted, cat.version, nil
}

// Breach returns one catalogue entry, or an error wrapping breachd.ErrUnknownBreach.
func (c *corpus) Breach(ctx context.Context, name string) (*breachd.CatalogEntry, uint64, error) {
	if c.closed.Load() {
		return nil, 0, breachd.ErrClosed
	}
	cat := c.cat.Load()
	b := cat.byName[name]
	if b == nil {
		return nil, cat.version, fmt.Errorf("%w %s", breachd.ErrUnknownBreach, breachd.Quote(name))
	}
	return b, cat.version, nil
}

// Stats describes a corpus.
type Stats struct {
	Keys     uint64 // distinct keys (accounts, or password hashes) in committed breaches
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
	Delta   int    // rows a replica merged in since the index was written
	// Overlay is a base view's rows over the base (base.go); 0 otherwise.
	Overlay int
}

// Stats returns the corpus's size and the filter's shape.
func (c *corpus) Stats() Stats {
	cat := c.cat.Load()
	keys := c.keys.Load()
	lsm, vlog := c.db.Size()
	fs := c.filter.Load().stats(keys)
	fs.EstimatedFPR = c.estimatedFPR()
	fs.FalsePositives = c.falsePositives.Load()
	st := Stats{Keys: keys, Version: cat.version, Breaches: len(cat.sorted), Filter: fs, LSMBytes: lsm, VLogSize: vlog}
	if c.index != nil {
		st.Index = c.indexStats()
	}
	return st
}

// dropStrays rebuilds the published filter, at its size, from the stored
// keys when changes that never committed left more keys in it than an
// eighth of the committed ones (and at least 4,096): each is a false
// positive, a Badger read, until then. An abandoned import's collection
// calls it, holding the import token and acquire, once its rows are gone.
func (c *corpus) dropStrays(ctx context.Context) error {
	strays, keys := c.strays.Load(), c.keys.Load()
	if strays < max(keys/8, 4096) {
		return nil
	}
	cat := c.cat.Load()
	old := c.filter.Load()
	f, _, err := c.rebuildFilter(ctx, cat, old.cap)
	if err != nil {
		return err
	}
	if err := c.saveFilterAt(f, cat.version, keys); err != nil {
		c.log.Warn("saving the rebuilt bloom filter failed; the one saved before still holds every key", "err", err)
	}
	c.filter.Store(f) // it holds every stored key: a superset of the committed ones
	c.strays.Store(0)
	c.log.Info("bloom filter rebuilt without an abandoned change's keys", "strays", strays, "keys", keys)
	return nil
}

// estimatedFPR is the published filter's model false-positive rate at the
// keys it holds: the committed ones, and the strays of changes that never
// committed.
func (c *corpus) estimatedFPR() float64 {
	f := c.filter.Load()
	return blockedFPR(f.blocks, f.k, c.keys.Load()+c.strays.Load())
}

// get reads the value of key's row in txn (or the base's, base.go) and
// calls fn with it (valid during the call); it reports whether the row
// exists.
func (c *corpus) get(txn *badger.Txn, key []byte, fn func(v []byte) error) (bool, error) {
	var k [1 + 32]byte
	item, err := txn.Get(c.kind.rowKey(k[:0], key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return c.baseRow(key, fn)
	}
	if err != nil {
		return false, classify("get", err)
	}
	return true, c.rowValue(item, fn)
}

// rowValue calls fn with the value of row item, checked.
func (c *corpus) rowValue(item *badger.Item, fn func(v []byte) error) error {
	return item.Value(func(v []byte) error {
		if !c.kind.validValue(v) {
			return fmt.Errorf("%w: %s row of %d bytes", ErrCorrupt, c.kind.name, len(v))
		}
		return fn(v)
	})
}

// sortedGets reads the rows of keys asked in ascending order, as get does,
// within txn: an iterator follows the keys instead of a point read per
// key. A point read seeks into every level of the LSM tree (a password
// corpus's tables carry no Bloom filter); the iterator moves only where
// Badger has rows, so past a base whose keys have few rows (a later
// release of Pwned Passwords: nearly every key is the base's) most keys
// cost one comparison. Close it before txn ends.
type sortedGets struct {
	c    *corpus
	it   *badger.Iterator
	last []byte // the row key asked before; nil before the first
	rk   [1 + 32]byte
}

func (c *corpus) sortedGets(txn *badger.Txn) *sortedGets {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte{c.kind.tag}
	return &sortedGets{c: c, it: txn.NewIterator(opts)}
}

func (g *sortedGets) close() { g.it.Close() }

// get is corpus.get for key, which should come after the key asked before
// (one that does not costs a seek, never a wrong answer).
func (g *sortedGets) get(key []byte, fn func(v []byte) error) (bool, error) {
	rk := g.c.kind.rowKey(g.rk[:0], key)
	it := g.it
	if g.last == nil || bytes.Compare(rk, g.last) <= 0 {
		it.Seek(rk)
	} else {
		// A few steps forward are cheaper than a seek; past them, seek.
		for steps := 0; it.Valid() && bytes.Compare(it.Item().Key(), rk) < 0; steps++ {
			if steps == 4 {
				it.Seek(rk)
				break
			}
			it.Next()
		}
	}
	g.last = append(g.last[:0], rk...)
	if !it.Valid() || !bytes.Equal(it.Item().Key(), rk) {
		return g.c.baseRow(key, fn)
	}
	return true, g.c.rowValue(it.Item(), fn)
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

// reach marks a named point of the corpus's work: tests stop or cancel
// work there (Options.hook), and the crash harness's child kills itself
// (crashPoint).
func (c *corpus) reach(point string) {
	if c.opts.hook != nil {
		c.opts.hook(point)
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
// the corpus opens, or with BackgroundShare 1.
func (c *corpus) pacer() *pacer {
	if !c.serving.Load() || c.opts.BackgroundShare >= 1 {
		return nil
	}
	return &pacer{share: c.opts.BackgroundShare, mark: time.Now()}
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

// openLocked opens a Badger directory with open, retrying for about a
// second while another holds its lock. Badger releases its lock (a flock
// of the directory) by closing the directory's file, and a process that
// forks (a supervisor, a test spawning children) shares that file with its
// child until the child execs: a corpus closed an instant before can
// still be locked.
func openLocked(ctx context.Context, open func() (*badger.DB, error)) (*badger.DB, error) {
	db, err := open()
	for wait := 10 * time.Millisecond; err != nil && strings.Contains(err.Error(), "Cannot acquire directory lock") && wait <= 640*time.Millisecond; wait *= 2 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		db, err = open()
	}
	return db, err
}
