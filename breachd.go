package breachd

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// DigestSize is the length in bytes of an account digest (SHA-256).
const DigestSize = 32

// MaxBatch is the most digests one batch may carry, in a bulk check or an
// import: big enough to amortise a round trip, small enough (320 KB) that one
// message never approaches a transport's size limit.
const MaxBatch = 10_000

// BatchLimitHeader is the response header in which a bulk check stream
// (ExposureService.CheckStream) tells its client the most digests a batch
// may carry: MaxBatch, or fewer where the caller's quota would refuse a
// batch that large. It is sent when the stream opens; clients size their
// batches by it.
const BatchLimitHeader = "breachd-batch-limit"

// Digest is the SHA-256 of a canonical email address (see package canon). It is
// the only form in which an account is ever stored or sent over the wire.
type Digest [DigestSize]byte

// String returns the lower-case hex form of d.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// ParseDigest parses a 64-character hex SHA-256 digest, upper or lower case.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) == 2*DigestSize {
		if _, err := hex.Decode(d[:], []byte(s)); err == nil {
			return d, nil
		}
	}
	return Digest{}, fmt.Errorf("%w: %s", ErrInvalidDigest, notDigest(s))
}

// notDigest says why s, which ParseDigest refused, is not 64 hex
// characters, in the terms of what it most likely is.
func notDigest(s string) string {
	want := 2 * DigestSize
	switch {
	case len(s) == want+2 && (strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X")):
		return "a 0x prefix: give the 64 hex characters alone"
	case len(s) == 44 && strings.HasSuffix(s, "="):
		return "44 characters ending in '=', base64 perhaps: give the digest in hex (64 characters)"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return fmt.Sprintf("%d characters, not all hex (%s at character %d), want %d hex characters", len(s), Quote(s[i:i+1]), i+1, want)
		}
	}
	return fmt.Sprintf("got %d hex characters, want %d", len(s), want)
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

// ValidateBatch checks a batch of digests packed back to back (32 bytes
// each): 1 to MaxBatch whole digests.
func ValidateBatch(packed []byte) error {
	n := len(packed)
	switch {
	case n == 0:
		return fmt.Errorf("%w: empty, want 1 to %d digests", ErrInvalidBatch, MaxBatch)
	case n%DigestSize != 0:
		return fmt.Errorf("%w: got %d bytes, want a multiple of %d (digests packed back to back)", ErrInvalidBatch, n, DigestSize)
	case n/DigestSize > MaxBatch:
		return fmt.Errorf("%w: got %d digests, want at most %d per batch: split it", ErrInvalidBatch, n/DigestSize, MaxBatch)
	}
	return nil
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
	// PasswordsPublished says whether the breach's passwords were published
	// in a usable form (nil: not said). Sega Pass's were encrypted: false.
	// Not in Have I Been Pwned's model; a pair import requires it not false.
	PasswordsPublished *bool `json:"PasswordsPublished,omitempty"`
	// Pairs, when not 0, says the breach holds email+password pairs: it is
	// the random id of its first combolist import, kept by later ones and
	// given to the breach of the same name in the pair corpus, whose pairs
	// answer only while the two agree (service/pairs.go). Set by the
	// service, never by a manifest.
	Pairs       uint64 `json:"-"`
	IsVerified  bool   `json:"IsVerified"`
	IsSensitive bool   `json:"IsSensitive"`

	// The rest of Have I Been Pwned's breach model, so that a catalogue
	// exported from upstream loads as it is and answers read the same.
	ModifiedDate       time.Time `json:"ModifiedDate"` // when the entry last changed
	LogoPath           string    `json:"LogoPath"`
	Attribution        string    `json:"Attribution"`
	DisclosureURL      string    `json:"DisclosureUrl"`
	IsFabricated       bool      `json:"IsFabricated"`
	IsRetired          bool      `json:"IsRetired"`
	IsSpamList         bool      `json:"IsSpamList"`
	IsMalware          bool      `json:"IsMalware"`
	IsSubscriptionFree bool      `json:"IsSubscriptionFree"`
	IsStealerLog       bool      `json:"IsStealerLog"`
}

// Limits on a breach record. They keep every catalogue entry small (about
// 21 KB at most), so that a page of the catalogue always fits one message.
const (
	MaxNameLen        = 64
	MaxTitleLen       = 256
	MaxDomainLen      = 253 // the longest DNS name
	MaxDescriptionLen = 16 << 10
	MaxDataClasses    = 64
	MaxDataClassLen   = 64
	MaxURLLen         = 2048
)

var breachName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidateName checks a breach name: 1 to 64 letters, digits, '.', '_' or
// '-', starting with a letter or digit.
func ValidateName(name string) error {
	if !breachName.MatchString(name) {
		return fmt.Errorf("%w: Name %s must be 1-%d characters of letters, digits, '.', '_' or '-', starting with a letter or digit",
			ErrInvalidBreach, Quote(name), MaxNameLen)
	}
	return nil
}

// Validate reports the first problem with b, or nil.
func (b *Breach) Validate() error {
	if err := ValidateName(b.Name); err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: breach %s: %s", ErrInvalidBreach, b.Name, fmt.Sprintf(format, a...))
	}
	text := func(field, v string, limit int) error {
		switch {
		case len(v) > limit:
			return bad("%s is %d bytes, want at most %d", field, len(v), limit)
		case !utf8.ValidString(v):
			return bad("%s is not valid UTF-8", field)
		}
		return nil
	}
	if b.Title == "" {
		return bad("Title is empty")
	}
	for _, f := range []struct {
		name, v string
		limit   int
	}{{"Title", b.Title, MaxTitleLen}, {"Domain", b.Domain, MaxDomainLen}, {"Description", b.Description, MaxDescriptionLen},
		{"LogoPath", b.LogoPath, MaxURLLen}, {"Attribution", b.Attribution, MaxTitleLen}, {"DisclosureUrl", b.DisclosureURL, MaxURLLen}} {
		if err := text(f.name, f.v, f.limit); err != nil {
			return err
		}
	}
	if b.PwnCount < 0 {
		return bad("PwnCount is negative")
	}
	if b.BreachDate != "" {
		d, err := time.Parse(time.DateOnly, b.BreachDate)
		if err != nil {
			return bad("BreachDate %s is not YYYY-MM-DD", Quote(b.BreachDate))
		}
		// A breach happened by today: a later date is a typo, which the
		// policy's breached_within would read as recent for years,
		// refusing every account of the breach. Tomorrow passes: a
		// breach dated in a time zone ahead of UTC.
		if d.After(time.Now().UTC().AddDate(0, 0, 1)) {
			return bad("BreachDate %s is in the future: it is the day the breach happened (a typo?)", b.BreachDate)
		}
	}
	if len(b.DataClasses) > MaxDataClasses {
		return bad("%d DataClasses, want at most %d", len(b.DataClasses), MaxDataClasses)
	}
	for i, c := range b.DataClasses {
		if c == "" {
			return bad("DataClasses[%d] is empty", i)
		}
		if err := text(fmt.Sprintf("DataClasses[%d]", i), c, MaxDataClassLen); err != nil {
			return err
		}
	}
	return nil
}

// CatalogEntry is a breach in the catalogue: its record plus what the corpus
// knows of it. Entries handed out by a corpus are shared and immutable.
type CatalogEntry struct {
	Breach
	// AccountCount is the number of distinct digests stored for the breach.
	AccountCount int64
}

// Exposure is the answer for one digest.
type Exposure struct {
	// Breaches the account appears in, ordered by name; empty when it is not exposed.
	Breaches []*CatalogEntry
	// CorpusVersion is the version of the corpus the answer was computed against.
	CorpusVersion uint64
}

// Exposed reports whether the account appears in any breach.
func (e Exposure) Exposed() bool { return len(e.Breaches) > 0 }

// BatchExposure is the answer for a batch of digests, packed: only the
// exposed positions are listed, each with an index into the batch's few
// distinct breach sets.
type BatchExposure struct {
	Count   int               // digests in the batch
	Exposed []uint32          // positions of exposed digests, ascending
	SetOf   []uint32          // for each entry of Exposed, an index into Sets
	Sets    [][]*CatalogEntry // distinct breach sets, each ordered by name
	// CorpusVersion is the version every answer in the batch was computed against.
	CorpusVersion uint64
}

// ImportStats counts what an import did.
type ImportStats struct {
	Breach string
	// Received is the number of digests the import was given.
	Received uint64
	// Duplicates were already recorded for this breach: repeats within the
	// dump, or rows of an earlier import of the same breach.
	Duplicates uint64
	// NewAccounts were in no breach before.
	NewAccounts uint64
	// KnownAccounts were already stored for other breaches and are now linked
	// to this one as well.
	KnownAccounts uint64
	// Version is the corpus version after the commit (0 before it).
	Version uint64
}

// OptionError reports an invalid configuration value, naming the option.
type OptionError struct {
	Option string // e.g. "FalsePositiveRate"
	Value  any
	Want   string // what a valid value looks like
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("invalid option %s = %v: want %s", e.Option, e.Value, e.Want)
}
