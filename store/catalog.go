package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// Key layout. Every key starts with a one-byte keyspace tag, leaving room for
// later indexes (password digests, keyed digests) beside the email one.
const (
	tagEmail   = 'e' // 'e' + SHA-256 of canonical email -> segment ids, 4 bytes each
	tagBreach  = 'b' // 'b' + breach name -> breachRecord (JSON)
	tagSegment = 's' // 's' + segment id (uint32 BE) -> segmentRecord (JSON)
	tagMeta    = 'm' // 'm' + name -> metadata
)

var (
	keyVersion = []byte("mcorpus_version")
	// keyImportVersion is the corpus version of the last committed import;
	// a lookup index built at it or later is current (index.go).
	keyImportVersion = []byte("mimport_version")
)

const emailKeySize = 1 + breachd.DigestSize

func emailKey(d *breachd.Digest) [emailKeySize]byte {
	var k [emailKeySize]byte
	k[0] = tagEmail
	copy(k[1:], d[:])
	return k
}

func breachKey(name string) []byte { return append([]byte{tagBreach}, name...) }

func segmentKey(id uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{tagSegment}, id)
}

// segmentRecord is the state of one import of a breach.
type segmentRecord struct {
	Breach    string `json:"breach"`
	Committed bool   `json:"committed"`
}

// setSegment records segment id as an import of breach, committed or not.
func setSegment(txn *badger.Txn, id uint32, breach string, committed bool) error {
	v, err := json.Marshal(segmentRecord{Breach: breach, Committed: committed})
	if err != nil {
		return err
	}
	return txn.Set(segmentKey(id), v)
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

// breachRecord is a catalogue entry at rest.
type breachRecord struct {
	breachd.Breach
	AccountCount int64 `json:"AccountCount"`
}

// catalog is an immutable snapshot of the committed corpus: which segments
// are visible and to which breach each belongs. Lookups load it once and use
// it throughout, so an answer never mixes two corpus versions.
type catalog struct {
	version uint64
	// importVersion is the version of the last committed import (at open:
	// the version, as what came before is not recorded). An index built
	// at importVersion or later holds every committed digest.
	importVersion uint64
	segments      map[uint32]*breachd.CatalogEntry // committed segments only
	segNames      map[uint32]string                // committed segment -> breach name
	byName        map[string]*breachd.CatalogEntry
	sorted        []*breachd.CatalogEntry // by name
}

func newCatalog(version, importVersion uint64, breaches map[string]*breachd.CatalogEntry, segs map[uint32]string) *catalog {
	c := &catalog{version: version, importVersion: importVersion, segments: make(map[uint32]*breachd.CatalogEntry, len(segs)), segNames: segs, byName: breaches}
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

// resolve appends to dst the visible breaches named by a membership value,
// each once, ordered by name.
func (c *catalog) resolve(dst []*breachd.CatalogEntry, val []byte) ([]*breachd.CatalogEntry, error) {
	if len(val)%4 != 0 {
		return dst, fmt.Errorf("%w: membership value of %d bytes", ErrCorrupt, len(val))
	}
	start := len(dst)
	for i := 0; i < len(val); i += 4 {
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

// visible reports whether a membership value names any committed segment.
func (c *catalog) visible(val []byte) bool {
	for i := 0; i+4 <= len(val); i += 4 {
		if c.segments[binary.BigEndian.Uint32(val[i:])] != nil {
			return true
		}
	}
	return false
}
