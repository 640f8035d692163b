package store

import (
	"encoding/binary"
	"math/bits"

	"github.com/breachd/breachd"
)

// A kind is what one corpus holds, as a small codec on the engine: the size
// of a row's key, what an entry of its value carries, how two entries of
// one import for the same key combine, and what the filter reads. Every
// corpus is the same engine (engine.go) over one kind.
//
// A row's value is a list of entries, one per segment (an import of a
// breach or release) that holds the key: the segment id (4 bytes,
// big-endian), then the kind's payload. Emails carry none: an entry says
// "this account is in this breach". Password hashes carry a count (8
// bytes): how often the release saw the password.
type kind struct {
	name    string // "email", "sha1" or "ntlm": the metrics label and directory
	tag     byte   // the rows' keyspace tag, as stored since the first release
	keySize int    // bytes of a row's key after the tag
	// counted: each entry carries a count. A key given twice by one import
	// adds its counts (a plain password list hashed on import); a lookup
	// answers the highest count of the visible entries. Otherwise a repeat
	// is a duplicate and a lookup answers the set of breaches.
	counted bool
	// indexed: the lookup index (index.go) serves present lookups, and a
	// counted kind's ranges.
	indexed bool
	// bulk says how a first import, into an empty corpus, is written.
	bulk bulkMode
	// spread makes the 32 bytes the filter reads from a shorter key.
	spread bool
}

type bulkMode int

const (
	// bulkSpill buffers the keys, spills sorted runs to files and writes
	// them merged at the commit: for input in no order (emails).
	bulkSpill bulkMode = iota
	// bulkStream writes keys straight into the corpus's base (base.go)
	// while they come in ascending order, as Pwned Passwords files do,
	// and goes on with write batches from the first key out of order.
	bulkStream
)

var (
	emailKind = &kind{name: "email", tag: 'e', keySize: breachd.DigestSize, indexed: true, bulk: bulkSpill}
	sha1Kind  = &kind{name: "sha1", tag: 'h', keySize: breachd.SHA1.Size(), counted: true, indexed: true, bulk: bulkStream, spread: true}
	ntlmKind  = &kind{name: "ntlm", tag: 'h', keySize: breachd.NTLM.Size(), counted: true, indexed: true, bulk: bulkStream, spread: true}
	// pairKind holds breachd.PairDigest of an account and a password, in
	// the breaches of the combolists that carried them: emails' codec
	// under another tag, without the lookup index (an assessment reads one
	// pair; sweeps do not).
	pairKind = &kind{name: "pairs", tag: 'p', keySize: breachd.DigestSize, bulk: bulkSpill}
)

// passwordKind returns the kind of a password corpus of hash kind k.
func passwordKind(k breachd.HashKind) *kind {
	switch k {
	case breachd.SHA1:
		return sha1Kind
	case breachd.NTLM:
		return ntlmKind
	}
	return nil
}

// entrySize is the bytes of one entry: a segment id and the payload.
func (k *kind) entrySize() int {
	if k.counted {
		return 12
	}
	return 4
}

// maxEntries bounds the entries of a row: more is corruption, not data.
const maxEntries = 1 << 12

// rowKey returns the tagged key of a row.
func (k *kind) rowKey(dst, key []byte) []byte {
	return append(append(dst, k.tag), key...)
}

// filterKey returns the 32 bytes the filter reads for key: the key itself
// when it is a digest (already uniformly random), else its random bytes
// followed by words mixed from them.
func (k *kind) filterKey(key []byte) [32]byte {
	var f [32]byte
	copy(f[:], key)
	if !k.spread {
		return f
	}
	w0 := binary.LittleEndian.Uint64(key)
	w1 := binary.LittleEndian.Uint64(key[8:])
	for i := len(key); i < 32; i += 8 {
		w0 = mix64(w0 ^ w1 ^ uint64(i))
		w1 = bits.RotateLeft64(w1, 29) + w0
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], w0)
		copy(f[i:], b[:])
	}
	return f
}

// mix64 is SplitMix64's finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// validValue reports whether v is a whole number of entries.
func (k *kind) validValue(v []byte) bool {
	n := k.entrySize()
	return len(v)%n == 0 && len(v) <= maxEntries*n
}

// entry reads the entry at offset i of v: its segment and its count (0
// for a kind without counts).
func (k *kind) entry(v []byte, i int) (seg uint32, count uint64) {
	seg = binary.BigEndian.Uint32(v[i:])
	if k.counted {
		count = binary.BigEndian.Uint64(v[i+4:])
	}
	return seg, count
}

// appendEntry appends an entry for seg with count to dst.
func (k *kind) appendEntry(dst []byte, seg uint32, count uint64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, seg)
	if k.counted {
		dst = binary.BigEndian.AppendUint64(dst, count)
	}
	return dst
}
