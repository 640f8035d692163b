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

// notUTF8 is the reason for bytes that are not UTF-8, saying where such
// text usually comes from.
const notUTF8 = "not valid UTF-8 (text in a legacy code page, such as a spreadsheet's plain CSV: export it as CSV UTF-8)"

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
			return "", invalid(notUTF8)
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
	// One pass classifies and lower-cases each byte by table, without a
	// branch a byte (a bulk sweep's addresses come at a million a second).
	var buf [maxLocal + 1 + maxDomain]byte
	if s := strings.TrimSpace(raw); len(s) <= len(buf) {
		b := buf[:len(s)]
		var acc uint8
		for i := 0; i < len(s); i++ {
			c := s[i]
			acc |= byteClass[c]
			b[i] = lowerByte[c]
		}
		if acc&cOff == 0 && addrShape(s) {
			return sha256.Sum256(b), nil
		}
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
		for _, r := range s {
			// An at sign that is not '@': typed in an input method's
			// full-width mode, or pasted from a page that shows it so.
			if r == '\uFF20' || r == '\uFE6B' {
				return "", "", invalid(fmt.Sprintf("no @: U+%04X is not one (an input method's full-width mode: type the address in ASCII)", r))
			}
		}
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
		// An invisible formatting character (a zero-width space, a byte
		// order mark mid-file, a soft hyphen, a bidi control) is copied
		// text, not part of an address: kept, it would give a digest no
		// address has. The joiners stay, which some scripts need.
		if unicode.Is(unicode.Cf, r) && r != '\u200c' && r != '\u200d' {
			return "", "", invalid(fmt.Sprintf("invisible formatting character U+%04X in local part (copied text, not one address)", r))
		}
		// A full-width form of an ASCII character (typed with an input
		// method's full-width mode) is not the character: "ａｌｉｃｅ"
		// would give a digest no address has. IDNA maps them in the
		// domain; a local part has no such mapping.
		if r >= 0xff01 && r <= 0xff5e {
			return "", "", invalid(fmt.Sprintf("full-width character U+%04X in local part (an input method's full-width mode: type the address in ASCII)", r))
		}
	}
	// A comma is a list separator in mail headers and CSV; in an address it
	// may only stand inside a quoted local part. "7,ann@example.com" is a
	// row of two fields, never one address. Nor may the other specials
	// of RFC 5322 stand outside quotes: "mailto:ann@example.com" is a
	// link, "Ann<ann@example.com" a display name cut short; answering for
	// them would answer "not exposed" for an address nobody has.
	if quoted := len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"'; !quoted {
		if strings.IndexByte(local, ',') >= 0 {
			return "", "", invalid("comma in an unquoted local part (a list or a CSV row, not one address)")
		}
		if strings.ContainsAny(local, localSpecials) {
			return "", "", invalid(`special character in an unquoted local part, one of ( ) : ; < > [ ] \ " (a mailto: link, a display name or markup, not one address)`)
		}
	}
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		return "", "", invalid("empty domain")
	}
	if strings.HasSuffix(domain, ".") {
		// IDNA takes a second trailing dot for the root's: the form
		// would keep one, a digest no address has.
		return "", "", invalid("bad domain: empty label at its end")
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

// asciiShape reports whether s, trimmed, is an ASCII address whose
// canonical form is s lower-cased (asciiFast).
func asciiShape(s string) bool {
	var acc uint8
	for i := 0; i < len(s); i++ {
		acc |= byteClass[s[i]]
	}
	return acc&cOff == 0 && addrShape(s)
}

// localSpecials are the specials of RFC 5322 but the comma, the dot and
// the @, which an unquoted local part cannot hold (split).
const localSpecials = `():;<>[]\"`

// Byte classes of the fast path (byteClass).
const (
	// cOff: never in a fast-path address: a control, a space, DEL, a comma
	// or another special (localSpecials), or a byte beyond ASCII (the
	// general path judges those).
	cOff = 1 << iota
	// cLDH: a letter, digit or hyphen, what a domain's labels hold.
	cLDH
)

var byteClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c <= ' ' || c == 0x7f || c == ',' || c >= 0x80 || strings.IndexByte(localSpecials, byte(c)) >= 0:
			t[c] = cOff
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-':
			t[c] = cLDH
		}
	}
	return t
}()

// lowerByte lower-cases an ASCII letter, and leaves every other byte.
var lowerByte = func() (t [256]byte) {
	for c := range 256 {
		t[c] = byte(c)
		if c >= 'A' && c <= 'Z' {
			t[c] += 'a' - 'A'
		}
	}
	return t
}()

// addrShape is asciiShape for s whose bytes are all of the fast path's
// (none cOff): one @ with a local part of 1 to maxLocal bytes before it,
// and after it a domain of at most maxDomain bytes in two or more labels
// of LDH bytes (ldhLabel).
func addrShape(s string) bool {
	at := strings.IndexByte(s, '@')
	if at <= 0 || at > maxLocal {
		return false
	}
	domain := s[at+1:]
	if len(domain) > maxDomain || strings.IndexByte(domain, '@') >= 0 {
		return false
	}
	dots, start := 0, 0
	for i := 0; i < len(domain); i++ {
		c := domain[i]
		if c == '.' {
			if !ldhLabel(domain[start:i]) {
				return false
			}
			dots++
			start = i + 1
		} else if byteClass[c]&cLDH == 0 {
			return false
		}
	}
	return dots > 0 && ldhLabel(domain[start:])
}

// ldhLabel reports whether a domain label of LDH bytes is 1 to 63 of them,
// with no leading or trailing hyphen and no hyphens in positions 3-4
// (which also excludes "xn--" punycode).
func ldhLabel(l string) bool {
	n := len(l)
	return n > 0 && n <= 63 && l[0] != '-' && l[n-1] != '-' && !(n >= 4 && l[2] == '-' && l[3] == '-')
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
