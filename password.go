package breachd

import (
	"encoding/hex"
	"fmt"
)

// HashKind is the kind of a password corpus: which hash of the password it
// holds. Each kind is a corpus of its own, with its own version.
type HashKind uint8

const (
	// SHA1 is the SHA-1 of the password's UTF-8 bytes, as Pwned Passwords.
	SHA1 HashKind = iota + 1
	// NTLM is the MD4 of the password's UTF-16LE encoding (Windows' NT hash).
	NTLM
)

// HashKinds lists every kind, for code that handles each in turn.
var HashKinds = []HashKind{SHA1, NTLM}

// Size is the length of a hash of kind k in bytes.
func (k HashKind) Size() int {
	switch k {
	case SHA1:
		return 20
	case NTLM:
		return 16
	}
	return 0
}

// String returns the kind's name as flags and paths spell it.
func (k HashKind) String() string {
	switch k {
	case SHA1:
		return "sha1"
	case NTLM:
		return "ntlm"
	}
	return fmt.Sprintf("HashKind(%d)", uint8(k))
}

// ParseHashKind parses "sha1" or "ntlm".
func ParseHashKind(s string) (HashKind, error) {
	for _, k := range HashKinds {
		if s == k.String() {
			return k, nil
		}
	}
	return 0, Errorf(ErrInvalidArgument, "hash kind %s: want sha1 or ntlm", Quote(s))
}

// MaxPasswordHashSize is the size of the longest hash kind.
const MaxPasswordHashSize = 20

// PasswordHash is a password hash of some kind: Kind.Size() bytes of B.
type PasswordHash struct {
	Kind HashKind
	B    [MaxPasswordHashSize]byte
}

// Bytes returns the hash's bytes.
func (h *PasswordHash) Bytes() []byte { return h.B[:h.Kind.Size()] }

// String returns the upper-case hex form, as Pwned Passwords writes it.
func (h PasswordHash) String() string {
	const digits = "0123456789ABCDEF"
	b := h.Bytes()
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

// ParsePasswordHash parses the hex form of a hash of kind k, either case.
func ParsePasswordHash(k HashKind, s string) (PasswordHash, error) {
	h := PasswordHash{Kind: k}
	n := k.Size()
	if n == 0 {
		return h, Errorf(ErrInvalidArgument, "unknown hash kind %d", k)
	}
	if len(s) != 2*n {
		return h, fmt.Errorf("%w: a %s hash has %d hex characters, got %d", ErrInvalidPasswordHash, k, 2*n, len(s))
	}
	if _, err := hex.Decode(h.B[:n], []byte(s)); err != nil {
		return h, fmt.Errorf("%w: %s is not hex", ErrInvalidPasswordHash, Quote(s))
	}
	return h, nil
}

// PasswordHashFromBytes checks the length of b for kind k.
func PasswordHashFromBytes(k HashKind, b []byte) (PasswordHash, error) {
	h := PasswordHash{Kind: k}
	if k.Size() == 0 {
		return h, Errorf(ErrInvalidArgument, "unknown hash kind %d", k)
	}
	if len(b) != k.Size() {
		return h, fmt.Errorf("%w: a %s hash has %d bytes, got %d", ErrInvalidPasswordHash, k, k.Size(), len(b))
	}
	copy(h.B[:], b)
	return h, nil
}

// PrefixHexLen is the length of a range query's prefix: 5 hex characters,
// 20 bits, as the Pwned Passwords range API.
const PrefixHexLen = 5

// RangePrefix is the 20-bit prefix of a range query.
type RangePrefix uint32

// ParseRangePrefix parses 5 hex characters, either case.
func ParseRangePrefix(s string) (RangePrefix, error) {
	if len(s) != PrefixHexLen {
		return 0, Errorf(ErrInvalidArgument, "range prefix %s: want exactly %d hex characters", Quote(s), PrefixHexLen)
	}
	var p uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, Errorf(ErrInvalidArgument, "range prefix %s: want exactly %d hex characters", Quote(s), PrefixHexLen)
		}
		p = p<<4 | uint32(v)
	}
	return RangePrefix(p), nil
}

// String returns the prefix's 5 upper-case hex characters.
func (p RangePrefix) String() string { return fmt.Sprintf("%05X", uint32(p)) }

// PasswordExposure is the answer for one password hash.
type PasswordExposure struct {
	// Count is how many times the password appears in the corpus: 0 when
	// it does not.
	Count uint64
	// CorpusVersion is the version of the kind's corpus the answer came from.
	CorpusVersion uint64
}

// PasswordRecord is one line of a password corpus: a hash and its count.
type PasswordRecord struct {
	Hash  [MaxPasswordHashSize]byte // the first Kind.Size() bytes
	Count uint64
}

// PasswordImportStats counts what a password import did.
type PasswordImportStats struct {
	Release string
	Kind    HashKind
	// Received is the number of records the import was given.
	Received uint64
	// NewHashes were in no committed release of the kind before.
	NewHashes uint64
	// UpdatedHashes were known, and now carry this release's count.
	UpdatedHashes uint64
	// Version is the kind's corpus version after the commit.
	Version uint64
}

// MaxPasswordCount bounds a prevalence count: far above any real one
// (the most common password is counted in the tens of millions).
const MaxPasswordCount = 1 << 48
