package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// Key layout. Every key starts with a one-byte keyspace tag: the rows'
// (kind.tag: 'e' for emails, 'h' for password hashes), and these.
const (
	tagBreach  = 'b' // 'b' + breach name -> breachRecord (JSON)
	tagSegment = 's' // 's' + segment id (uint32 BE) -> segmentRecord (JSON)
	tagMeta    = 'm' // 'm' + name -> metadata
)

var (
	keyVersion = []byte("mcorpus_version")
	// keyImportVersion is the corpus version of the last committed import;
	// a lookup index built at it or later is current (index.go).
	keyImportVersion = []byte("mimport_version")
	// keyNextSegment is the next segment id to hand out. Ids are never
	// reused: rows of a deleted breach or an abandoned import may name an
	// id until they are collected, and a new import given that id would
	// make them its own at its commit (see allocSegment).
	keyNextSegment = []byte("mnext_segment")
	// keyShipped records the Upto of the last Backup (see Backup): a set
	// whose version stays above it, so that Badger's clock, which restarts
	// at the highest version it finds, never restarts below an Upto.
	keyShipped = []byte("mshipped")
)

// bulkSegment is the segment of a first import's bulk load (bulk.go, and a
// password corpus's first release). allocSegment never hands it out: rows
// a bulk load wrote before a crash stopped its commit name it without a
// record, and only the next bulk load, which starts by wiping the store,
// may use it again.
const bulkSegment = 1

func breachKey(name string) []byte { return append([]byte{tagBreach}, name...) }

func segmentKey(id uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{tagSegment}, id)
}

// segmentRecord is the state of one import of a breach.
type segmentRecord struct {
	Breach    string `json:"breach"`
	Committed bool   `json:"committed"`
	// Since is a Badger version older than every row the import wrote (the
	// read timestamp of the transaction that recorded it), so that an
	// abandoned import is collected by reading only what changed after it
	// (collectSegment), and a committed one's rows are found by reading
	// only what changed after it (the watchlists' diff, events.go). 0: not
	// known (records written before it was kept, a bulk load's rows).
	Since uint64 `json:"since,omitempty"`
}

// setSegment records segment id as an import of breach, committed or not,
// whose rows were all written after Badger version since (0: unknown).
func setSegment(txn *badger.Txn, id uint32, breach string, committed bool, since uint64) error {
	v, err := json.Marshal(segmentRecord{Breach: breach, Committed: committed, Since: since})
	if err != nil {
		return err
	}
	return txn.Set(segmentKey(id), v)
}

// errLegacyCounter says that a corpus written before segment ids were
// counted has a delete's collection outstanding: the ids its uncollected
// rows name are recorded nowhere, so none can be handed out until it is
// collected.
var errLegacyCounter = errors.New("segment counter missing with a collection outstanding")

// allocSegment hands out the next segment id from the persisted counter,
// in the caller's transaction: the id and the record naming it commit
// together, so an id is never given twice, whatever was deleted, abandoned
// or interrupted before. A corpus written before the counter existed
// starts it after every recorded id, which is safe only when no collection
// is outstanding (errLegacyCounter otherwise: collect, then retry).
func allocSegment(txn *badger.Txn) (uint32, error) {
	next, err := getUint64(txn, keyNextSegment)
	if err != nil {
		return 0, err
	}
	if next == 0 {
		if _, err := txn.Get(keyCollect); err == nil {
			return 0, errLegacyCounter
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return 0, err
		}
		var last uint32
		if err := scan(txn, tagSegment, func(k, _ []byte) error {
			last = max(last, binary.BigEndian.Uint32(k[1:]))
			return nil
		}); err != nil {
			return 0, err
		}
		next = uint64(last) + 1
	}
	next = max(next, bulkSegment+1)
	if next >= 1<<32 {
		return 0, fmt.Errorf("%w: segment ids exhausted", ErrCorrupt)
	}
	if err := txn.Set(keyNextSegment, binary.BigEndian.AppendUint64(nil, next+1)); err != nil {
		return 0, err
	}
	return uint32(next), nil
}

// getUint64 reads the big-endian uint64 stored at key: 0 if there is none.
func getUint64(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: %s of %d bytes", ErrCorrupt, key[1:], len(v))
		}
		n = binary.BigEndian.Uint64(v)
		return nil
	})
	return n, err
}

// breachRecord is a catalogue entry at rest: a breach (or a password
// release) and the keys it holds.
type breachRecord struct {
	breachd.Breach
	AccountCount int64 `json:"AccountCount"`
	// Hashes is what password corpora written before the engine called
	// AccountCount; it is read, never written.
	Hashes int64 `json:"Hashes,omitempty"`
	// Pairs is Breach.Pairs, which JSON of the breach alone leaves out.
	Pairs uint64 `json:"pairs,omitempty"`
}

// newBreachRecord is the record of breach b.
func newBreachRecord(b breachd.Breach, accounts int64) breachRecord {
	return breachRecord{Breach: b, AccountCount: accounts, Pairs: b.Pairs}
}

func parseBreachRecord(v []byte) (breachRecord, error) {
	var r breachRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("%w: breach record: %v", ErrCorrupt, err)
	}
	if r.AccountCount == 0 {
		r.AccountCount = r.Hashes
	}
	r.Hashes = 0
	r.Breach.Pairs = r.Pairs
	return r, nil
}

// catalog is an immutable snapshot of the committed corpus: which segments
// are visible and to which breach each belongs. Lookups load it once and use
// it throughout, so an answer never mixes two corpus versions.
type catalog struct {
	kind    *kind
	version uint64
	// importVersion is the version of the last committed import (at open:
	// the version, as what came before is not recorded). An index built
	// at importVersion or later holds every committed key.
	importVersion uint64
	// readTs pins a replica's reads to the Badger version its rows were
	// loaded to (corpus.snapshot); 0 on a writer.
	readTs   uint64
	segments map[uint32]*breachd.CatalogEntry // committed segments only
	segNames map[uint32]string                // committed segment -> breach name
	byName   map[string]*breachd.CatalogEntry
	sorted   []*breachd.CatalogEntry // by name
}

func newCatalog(k *kind, version, importVersion uint64, breaches map[string]*breachd.CatalogEntry, segs map[uint32]string) *catalog {
	c := &catalog{kind: k, version: version, importVersion: importVersion, segments: make(map[uint32]*breachd.CatalogEntry, len(segs)), segNames: segs, byName: breaches}
	for id, name := range segs {
		if b := breaches[name]; b != nil {
			c.segments[id] = b
		}
	}
	for _, b := range breaches {
		c.sorted = append(c.sorted, b)
	}
	slices.SortFunc(c.sorted, func(a, b *breachd.CatalogEntry) int { return strings.Compare(a.Name, b.Name) })
	return c
}

// with returns the catalogue after a change at version: breach b (nil: the
// breach named name removed) with segments segs of it added, or those of
// the removed breach dropped.
func (c *catalog) with(version, importVersion uint64, name string, b *breachd.CatalogEntry, addSeg uint32) *catalog {
	breaches := maps.Clone(c.byName)
	segs := maps.Clone(c.segNames)
	if b == nil {
		delete(breaches, name)
		for id, n := range segs {
			if n == name {
				delete(segs, id)
			}
		}
	} else {
		breaches[name] = b
		if addSeg != 0 {
			segs[addSeg] = name
		}
	}
	nc := newCatalog(c.kind, version, importVersion, breaches, segs)
	nc.readTs = c.readTs
	return nc
}

// segmentIDs returns the committed segments' ids, in ascending order.
func (c *catalog) segmentIDs() []uint32 {
	return slices.Sorted(maps.Keys(c.segments))
}

// resolve appends to dst the visible breaches named by a row value, each
// once, ordered by name.
func (c *catalog) resolve(dst []*breachd.CatalogEntry, val []byte) ([]*breachd.CatalogEntry, error) {
	n := c.kind.entrySize()
	if len(val)%n != 0 {
		return dst, fmt.Errorf("%w: %s row of %d bytes", ErrCorrupt, c.kind.name, len(val))
	}
	start := len(dst)
	for i := 0; i < len(val); i += n {
		b := c.segments[binary.BigEndian.Uint32(val[i:])]
		if b == nil || slices.Contains(dst[start:], b) {
			continue
		}
		dst = append(dst, b)
	}
	if len(dst)-start > 1 {
		slices.SortFunc(dst[start:], func(a, b *breachd.CatalogEntry) int { return strings.Compare(a.Name, b.Name) })
	}
	return dst, nil
}

// visible reports whether a row value has an entry of a committed segment.
func (c *catalog) visible(val []byte) bool {
	n := c.kind.entrySize()
	for i := 0; i+n <= len(val); i += n {
		if c.segments[binary.BigEndian.Uint32(val[i:])] != nil {
			return true
		}
	}
	return false
}

// count returns a counted row's answer: the highest count of its visible
// entries (0 if none is visible). Pwned Passwords counts only grow from one
// release to the next, so this is the newest release's count; and a small
// list imported beside a large corpus never lowers one.
func (c *catalog) count(val []byte) uint64 {
	var best uint64
	n := c.kind.entrySize()
	for i := 0; i+n <= len(val); i += n {
		if seg, cnt := c.kind.entry(val, i); c.segments[seg] != nil {
			best = max(best, cnt)
		}
	}
	return best
}
