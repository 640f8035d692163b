package store

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/breachd/breachd"
)

// Options configure a corpus of any kind (Open, OpenPasswords). Start from
// DefaultOptions; opening refuses invalid values rather than replacing them.
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
	// Published says replicas follow the corpus by deltas of Backup (the
	// daemon's NATS publisher): from open, not only from the first
	// Backup, compactions keep every change newer than the last delta's
	// start until a delta has carried it (see corpus.hold).
	Published bool
	// IndexKey, if set, keys the corpus (keyed.go): it stores
	// a keyed SHA-256 of every digest, never the digest. A corpus
	// keyed with a key opens only with it.
	IndexKey *IndexKey
	// Private makes a new keyed email corpus private (private.go): every
	// import writes each account's private row, so that private checks
	// can answer. A corpus records it; one built without it is refused.
	Private bool
	// BucketMin is the fewest accounts every bucket of a private check
	// holds at the prefix length the corpus advertises.
	BucketMin int
	// Registerer receives the corpus gauges (accounts, breaches, version,
	// filter shape and false positives, import progress). Nil registers none.
	Registerer prometheus.Registerer

	// hook, set only by tests (export_test.go), is called at each named
	// point of the store's work (see Store.reach).
	hook func(point string)
	// maxOverlay bounds the rows a password corpus's base view takes over
	// its base (base.go): 0 for the default, below 0 for none (tests).
	maxOverlay int
	// maxDelta bounds the rows a lookup index's delta takes before it is
	// compacted, and the rows an import keeps for it (index.go): 0 for the
	// default (maxDeltaRows), whose deltas are also compacted once changes
	// pause. Set (tests), deltas are kept across imports until they pass
	// it, so that histories meet delta views.
	maxDelta int
	// indexSettle is how long no change may merge into the lookup index's
	// delta before it is compacted (compactSoon): 0 for the default,
	// defaultIndexSettle (tests shorten it).
	indexSettle time.Duration
	// filterLog bounds the filter's log (filterlog.go) in bytes: 0 for the
	// default, below 0 for none, every save whole (tests).
	filterLog int64
}

// defaultIndexSettle is how long a lookup index's delta waits for the
// changes merging into it to pause before it is compacted.
const defaultIndexSettle = 5 * time.Second

func (o Options) settleAfter() time.Duration {
	if o.indexSettle > 0 {
		return o.indexSettle
	}
	return defaultIndexSettle
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
		BucketMin:         100,
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
	case o.BucketMin < 1:
		return &breachd.OptionError{Option: "BucketMin", Value: o.BucketMin, Want: "at least 1 account"}
	case o.MaxBulkDigests < 0:
		return &breachd.OptionError{Option: "MaxBulkDigests", Value: o.MaxBulkDigests, Want: "0 (no bound) or more digests"}
	}
	return nil
}
