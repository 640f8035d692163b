package breachd

import (
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
)

// An account's password is known to a pair corpus only as the digest of
// the pair (PairDigest): never the password, never its plain hash.

// PasswordSHA1Size is the bytes of a password's SHA-1, the form in which
// clients send a password (hashed locally; a password never crosses the
// wire).
const PasswordSHA1Size = sha1.Size

// PairRecord is one line of a combolist, as it leaves the reader: the
// account's digest and the SHA-1 of its password.
type PairRecord struct {
	Account  Digest
	Password [PasswordSHA1Size]byte
}

// pairLabel separates pair digests from every other SHA-256 breachd takes.
const pairLabel = "breachd pair v1\x00"

// PairDigest is what a pair corpus stores for an account and a password:
// SHA-256 over a fixed label, the account's digest and the password's
// SHA-1. Whoever holds it learns neither; testing it needs both.
func PairDigest(account *Digest, passwordSHA1 *[PasswordSHA1Size]byte) Digest {
	var buf [len(pairLabel) + DigestSize + PasswordSHA1Size]byte
	n := copy(buf[:], pairLabel)
	n += copy(buf[n:], account[:])
	copy(buf[n:], passwordSHA1[:])
	return sha256.Sum256(buf[:])
}

// PasswordStatus says, for one breach an account is in, what is known of
// the account's password there.
type PasswordStatus uint8

const (
	// PasswordUnknown: the corpus holds no password of the breach (its
	// passwords were not published in a usable form, as Sega Pass's
	// encrypted ones; or none were imported). The account is exposed;
	// whether its password is, nobody here can say.
	PasswordUnknown PasswordStatus = iota
	// PasswordExposed: this account with this password is in the breach.
	PasswordExposed
	// PasswordNotExposed: the breach's pairs were imported, and this
	// account's pair with this password is not among them.
	PasswordNotExposed
)

func (s PasswordStatus) String() string {
	switch s {
	case PasswordExposed:
		return "exposed"
	case PasswordNotExposed:
		return "not_exposed"
	}
	return "unknown"
}

// AssessContext is where in a sign-in flow an assessment is asked.
type AssessContext uint8

const (
	ContextUnspecified AssessContext = iota
	ContextSignup
	ContextLogin
	ContextPasswordChange
)

var assessContexts = [...]string{"unspecified", "signup", "login", "password_change"}

func (c AssessContext) String() string {
	if int(c) < len(assessContexts) {
		return assessContexts[c]
	}
	return fmt.Sprintf("context(%d)", c)
}

// ParseAssessContext parses "signup", "login" or "password_change" ("" is
// unspecified).
func ParseAssessContext(s string) (AssessContext, error) {
	if s == "" {
		return ContextUnspecified, nil
	}
	for i, n := range assessContexts[1:] {
		if s == n {
			return AssessContext(i + 1), nil
		}
	}
	return 0, Errorf(ErrInvalidArgument, "context %s: want signup, login or password_change", Quote(s))
}

// Decision is what a policy tells a sign-in flow to do, from the mildest.
type Decision uint8

const (
	Allow Decision = iota
	Warn
	StepUp // ask for a second factor
	Reset  // force a password reset
	Block
)

var decisions = [...]string{"allow", "warn", "step_up", "reset", "block"}

func (d Decision) String() string {
	if int(d) < len(decisions) {
		return decisions[d]
	}
	return fmt.Sprintf("decision(%d)", d)
}

// ParseDecision parses a decision's name.
func ParseDecision(s string) (Decision, error) {
	for i, n := range decisions {
		if s == n {
			return Decision(i), nil
		}
	}
	return 0, Errorf(ErrInvalidArgument, "decision %s: want allow, warn, step_up, reset or block", Quote(s))
}

// AssessRequest is one account to assess, with its password if the
// caller has it.
type AssessRequest struct {
	Account Digest
	// Password is the SHA-1 of the password, when HasPassword.
	Password    [PasswordSHA1Size]byte
	HasPassword bool
	Context     AssessContext
	// Principal is who asks: a policy may be chosen by it.
	Principal string
}

// BreachExposure is one breach an account is in, with what is known of
// its password there.
type BreachExposure struct {
	*CatalogEntry
	Password PasswordStatus
}

// Assessment is the facts about one account, and the decision a policy
// drew from them.
type Assessment struct {
	// Breaches the account is in, ordered by name.
	Breaches []BreachExposure
	// PasswordCount is how often the password was seen in the SHA-1
	// password corpus (0 when absent or not asked).
	PasswordCount uint64
	// CorpusVersion is the email corpus's version the answer was read at.
	CorpusVersion uint64

	Decision Decision
	// Reasons are the names of the rules that fired, in policy order.
	Reasons []string
	// Enforced is false in report-only mode: Decision is then Allow, and
	// WouldBe what enforcement would have answered.
	Enforced bool
	WouldBe  Decision
}

// PairImportStats summarises a combolist import.
type PairImportStats struct {
	Breach string
	// Received is the pairs received; Accounts the emails among them.
	Received uint64
	// Pairs and Accounts are the distinct pairs and accounts stored.
	Pairs, Accounts uint64
	Version         uint64 // the email corpus's version after the commit
}
