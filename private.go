package breachd

import (
	"fmt"
	"slices"
	"strings"
)

// A private check (docs/PRIVATE-LOOKUP.md) asks whether an account is
// exposed without telling the server which: the client sends a short prefix
// of its digest, which selects a bucket of at least the server's bucket
// minimum of accounts, and its digest blinded for an oblivious PRF (RFC 9497,
// ristretto255-SHA512). The server answers with the blinded element
// evaluated under its key and the PRF values of every account in the bucket,
// each with its breaches; the client unblinds and matches locally.

// Sizes of a private check's fields.
const (
	// PrivateElementSize is the bytes of an encoded ristretto255 element:
	// a blinded or evaluated one.
	PrivateElementSize = 32
	// PrivateValueSize is the bytes of the PRF output an answer lists for
	// each account: the first bytes of the 64 that Finalize gives.
	PrivateValueSize = 16
	// MaxPrefixBits is the longest prefix a server stores, and so the
	// longest it can advertise.
	MaxPrefixBits = 32
)

// PrivateQuery is a private check's request.
type PrivateQuery struct {
	// Prefix holds the first PrefixBits bits of the digest, most
	// significant first, in (PrefixBits+7)/8 bytes; the bits after them
	// are zero.
	Prefix     []byte
	PrefixBits int
	// Blinded is the client's blinded element (RFC 9497 Blind).
	Blinded []byte
}

// ErrInvalidPrivateQuery is the kind of a malformed private check.
var ErrInvalidPrivateQuery = NewError(ErrInvalidArgument, "invalid private check")

// Validate checks the query's shape (not its prefix length against the
// server's, which the corpus does).
func (q PrivateQuery) Validate() error {
	if q.PrefixBits < 0 || q.PrefixBits > MaxPrefixBits {
		return Errorf(ErrInvalidPrivateQuery, "prefix_bits %d: want 0 to %d", q.PrefixBits, MaxPrefixBits)
	}
	if want := (q.PrefixBits + 7) / 8; len(q.Prefix) != want {
		return Errorf(ErrInvalidPrivateQuery, "a prefix of %d bytes for %d bits: want %d bytes", len(q.Prefix), q.PrefixBits, want)
	}
	if r := q.PrefixBits % 8; r != 0 && q.Prefix[len(q.Prefix)-1]&(0xff>>r) != 0 {
		return Errorf(ErrInvalidPrivateQuery, "the prefix has bits set after its first %d: zero them", q.PrefixBits)
	}
	if len(q.Blinded) != PrivateElementSize {
		return Errorf(ErrInvalidPrivateQuery, "a blinded element of %d bytes: want %d", len(q.Blinded), PrivateElementSize)
	}
	return nil
}

// PrivateEntry is one account of a private check's bucket: its PRF value
// and the breaches it is in.
type PrivateEntry struct {
	Value    [PrivateValueSize]byte
	Breaches []*CatalogEntry
}

// PrivateAnswer answers a private check.
type PrivateAnswer struct {
	// Evaluated is the blinded element evaluated under the server's key.
	Evaluated []byte
	// Entries are the exposed accounts of the bucket, ordered by Value.
	Entries []PrivateEntry
	// PrefixBits is the server's prefix length now (the query's may be up
	// to two bits shorter).
	PrefixBits    int
	CorpusVersion uint64
}

// Breaches returns the distinct breaches the answer's entries name,
// ordered by name, and each one's index in that order: how the wire forms
// list them once and number them.
func (a PrivateAnswer) Breaches() ([]*CatalogEntry, map[*CatalogEntry]uint32) {
	index := map[*CatalogEntry]uint32{}
	var bs []*CatalogEntry
	for _, e := range a.Entries {
		for _, b := range e.Breaches {
			if _, ok := index[b]; !ok {
				index[b] = 0
				bs = append(bs, b)
			}
		}
	}
	slices.SortFunc(bs, func(x, y *CatalogEntry) int { return strings.Compare(x.Name, y.Name) })
	for i, b := range bs {
		index[b] = uint32(i)
	}
	return bs, index
}

// PrivateInfo is what a client needs before a private check.
type PrivateInfo struct {
	// PrefixBits is the prefix length to send: every bucket of that length
	// holds at least BucketMin accounts (or, for a corpus of fewer, all).
	PrefixBits int
	BucketMin  int
	// SmallestBucket is the accounts of the smallest bucket at PrefixBits.
	SmallestBucket uint64
	Accounts       uint64
	// CorpusVersion is the version the buckets were counted at.
	CorpusVersion uint64
}

// ErrStalePrefix is the kind of a private check whose prefix length is not
// one the server answers (ErrPrefixBits): the client's is stale. It is a
// failed precondition (gRPC's FAILED_PRECONDITION); HTTP answers 409, so
// that a client does not take it for a server to retry later.
var ErrStalePrefix = NewError(ErrFailedPrecondition, "stale prefix length")

// ErrPrefixBits refuses a private check whose prefix length is not one the
// server answers; its message gives the length to use.
func ErrPrefixBits(got, want int) error {
	return Errorf(ErrStalePrefix, "prefix_bits %d: this server answers %d (or up to 2 fewer); ask for the private lookup info again", got, want)
}

// PrefixOf returns the first bits bits of d as a private query's prefix.
func PrefixOf(d Digest, bits int) []byte {
	if bits < 0 || bits > 8*DigestSize {
		panic(fmt.Sprintf("breachd: prefix of %d bits", bits))
	}
	p := append([]byte(nil), d[:(bits+7)/8]...)
	if r := bits % 8; r != 0 {
		p[len(p)-1] &^= 0xff >> r
	}
	return p
}

// MinPaddedSize is the smallest size class of a private check's answer.
const MinPaddedSize = 1 << 10

// PaddedSize returns the size class of an answer of n bytes: the least
// power of two at least n and MinPaddedSize. A private check's answer, in
// every encoding, is padded to exactly its class, so that its length tells
// nothing of the bucket but the class.
func PaddedSize(n int) int {
	c := MinPaddedSize
	for c < n {
		c <<= 1
	}
	return c
}

// PrivateSuite names the OPRF suite of private checks (RFC 9497).
const PrivateSuite = "ristretto255-SHA512"
