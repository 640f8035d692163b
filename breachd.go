package breachd

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// DigestSize is the length in bytes of an account digest (SHA-256).
const DigestSize = 32

// Digest is the SHA-256 of a canonical email address (see package canon). It is
// the only form in which an account is ever stored or sent over the wire.
type Digest [DigestSize]byte

// String returns the lower-case hex form of d.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// ErrInvalidDigest is returned (wrapped) for text or bytes that are not a digest.
var ErrInvalidDigest = errors.New("invalid digest")

// ParseDigest parses a 64-character hex SHA-256 digest, upper or lower case.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*DigestSize {
		return d, fmt.Errorf("%w: got %d hex characters, want %d", ErrInvalidDigest, len(s), 2*DigestSize)
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return Digest{}, fmt.Errorf("%w: not hex", ErrInvalidDigest)
	}
	return d, nil
}

// DigestFromBytes copies a 32-byte slice into a Digest.
func DigestFromBytes(b []byte) (Digest, error) {
	var d Digest
	if len(b) != DigestSize {
		return d, fmt.Errorf("%w: got %d bytes, want %d", ErrInvalidDigest, len(b), DigestSize)
	}
	copy(d[:], b)
	return d, nil
}

// Breach describes one breach in the catalogue. Its fields follow the breach
// model users know from Have I Been Pwned, so that manifests and answers read
// the same way.
type Breach struct {
	Name        string    `json:"Name"`        // stable identifier, e.g. "SegaPass"
	Title       string    `json:"Title"`       // human-readable title
	Domain      string    `json:"Domain"`      // primary domain of the breached service
	BreachDate  string    `json:"BreachDate"`  // YYYY-MM-DD, when the breach happened
	AddedDate   time.Time `json:"AddedDate"`   // when the breach was added to a corpus
	PwnCount    int64     `json:"PwnCount"`    // number of accounts the breach disclosed
	Description string    `json:"Description"` // free text, may contain HTML as in HIBP
	DataClasses []string  `json:"DataClasses"` // e.g. "Email addresses", "Passwords"
	IsVerified  bool      `json:"IsVerified"`
	IsSensitive bool      `json:"IsSensitive"`
}

// ErrInvalidBreach is returned (wrapped) for a breach record that cannot be stored.
var ErrInvalidBreach = errors.New("invalid breach")

var breachName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate reports the first problem with b, or nil.
func (b *Breach) Validate() error {
	switch {
	case !breachName.MatchString(b.Name):
		return fmt.Errorf("%w: Name %q must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalidBreach, b.Name)
	case b.Title == "":
		return fmt.Errorf("%w: breach %s: Title is empty", ErrInvalidBreach, b.Name)
	case b.PwnCount < 0:
		return fmt.Errorf("%w: breach %s: PwnCount is negative", ErrInvalidBreach, b.Name)
	}
	if b.BreachDate != "" {
		if _, err := time.Parse(time.DateOnly, b.BreachDate); err != nil {
			return fmt.Errorf("%w: breach %s: BreachDate %q is not YYYY-MM-DD", ErrInvalidBreach, b.Name, b.BreachDate)
		}
	}
	return nil
}
