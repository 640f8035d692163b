package canon

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"

	"github.com/breachd/breachd"
)

// Limits from RFC 5321 section 4.5.3.1.
const (
	maxLocal  = 64
	maxDomain = 253
)

// ErrInvalidEmail is wrapped by every error Email and Digest return.
var ErrInvalidEmail = errors.New("invalid email")

// profile is pinned rather than idna.Lookup, whose configuration "may change
// over time": a silent change would change digests.
var profile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.VerifyDNSLength(true),
	idna.CheckHyphens(true),
	idna.CheckJoiners(true),
)

// Email returns the canonical form of raw: surrounding white space trimmed,
// NFC-normalised, lower-cased, and the domain in its IDNA ASCII form. It
// rejects input that is not an address (see docs/canonical-email.md).
func Email(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if isASCII(s) {
		if c, ok := asciiFast(s); ok {
			return c, nil
		}
	} else {
		if !utf8.ValidString(s) {
			return "", invalid("not valid UTF-8")
		}
		s = norm.NFC.String(s)
	}
	s = strings.ToLower(s)
	return slow(s)
}

// Digest returns the SHA-256 of the canonical form of raw.
func Digest(raw string) (breachd.Digest, error) {
	// The common case, a plain ASCII address, is lower-cased into a
	// buffer on the stack and hashed there: no allocation.
	if s := strings.TrimSpace(raw); isASCII(s) && asciiShape(s) {
		var buf [maxLocal + 1 + maxDomain]byte
		b := buf[:len(s)]
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			b[i] = c
		}
		return sha256.Sum256(b), nil
	}
	c, err := Email(raw)
	if err != nil {
		return breachd.Digest{}, err
	}
	return sha256.Sum256([]byte(c)), nil
}

// Sum returns the SHA-256 of an already canonical address.
func Sum(canonical string) breachd.Digest { return sha256.Sum256([]byte(canonical)) }

func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidEmail, reason) }

// slow is the general path: s is trimmed, NFC and lower-cased.
func slow(s string) (string, error) {
	local, domain, err := split(s)
	if err != nil {
		return "", err
	}
	d, err := profile.ToASCII(domain)
	if err != nil {
		return "", invalid("bad domain: " + idnaReason(err))
	}
	if err := checkDomainShape(d); err != nil {
		return "", err
	}
	return local + "@" + d, nil
}

func split(s string) (local, domain string, err error) {
	if s == "" {
		return "", "", invalid("empty")
	}
	at := strings.IndexByte(s, '@')
	if at < 0 {
		return "", "", invalid("no @")
	}
	if strings.IndexByte(s[at+1:], '@') >= 0 {
		return "", "", invalid("more than one @")
	}
	local, domain = s[:at], s[at+1:]
	if local == "" {
		return "", "", invalid("empty local part")
	}
	if len(local) > maxLocal {
		return "", "", invalid(fmt.Sprintf("local part longer than %d bytes", maxLocal))
	}
	for _, r := range local {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "", "", invalid("white space or control character in local part")
		}
	}
	// A comma is a list separator in mail headers and CSV; in an address it
	// may only stand inside a quoted local part. "7,ann@example.com" is a
	// row of two fields, never one address.
	if strings.IndexByte(local, ',') >= 0 && !(len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"') {
		return "", "", invalid("comma in an unquoted local part (a list or a CSV row, not one address)")
	}
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		return "", "", invalid("empty domain")
	}
	return local, domain, nil
}

func checkDomainShape(d string) error {
	if len(d) > maxDomain {
		return invalid(fmt.Sprintf("domain longer than %d bytes", maxDomain))
	}
	if strings.IndexByte(d, '.') < 0 {
		return invalid("domain has a single label")
	}
	return nil
}

// idnaReason trims the library's error to something stable and short.
func idnaReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// asciiFast canonicalises an all-ASCII, already trimmed address without the
// IDNA machinery. It reports ok=false whenever it is not sure, and the caller
// falls back to the general path; FuzzEmailFastPath checks both agree.
func asciiFast(s string) (string, bool) {
	if !asciiShape(s) {
		return "", false
	}
	return lowerASCII(s), true
}

// asciiShape reports whether s, ASCII and trimmed, is an address whose
// canonical form is s lower-cased (asciiFast).
func asciiShape(s string) bool {
	at := -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == ',' {
			return false
		}
		if c == '@' {
			if at >= 0 {
				return false
			}
			at = i
		}
	}
	if at <= 0 || at > maxLocal || at == len(s)-1 {
		return false
	}
	domain := s[at+1:]
	if len(domain) > maxDomain || domain[len(domain)-1] == '.' {
		return false
	}
	// Validate LDH labels: 1-63 of [a-z0-9-], no leading or trailing hyphen,
	// no hyphens in positions 3-4 (which also excludes "xn--" punycode).
	dots, start := 0, 0
	for i := 0; i <= len(domain); i++ {
		if i < len(domain) && domain[i] != '.' {
			c := domain[i] | 0x20
			if !(c >= 'a' && c <= 'z' || domain[i] >= '0' && domain[i] <= '9' || domain[i] == '-') {
				return false
			}
			continue
		}
		label := domain[start:i]
		if n := len(label); n == 0 || n > 63 || label[0] == '-' || label[n-1] == '-' ||
			(n >= 4 && label[2] == '-' && label[3] == '-') {
			return false
		}
		if i < len(domain) {
			dots++
		}
		start = i + 1
	}
	return dots > 0
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
