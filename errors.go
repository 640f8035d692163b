package breachd

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Kinds of error that cross package boundaries. Every error a use case
// returns wraps one of them, so that errors.Is(err, ErrNotFound) holds for an
// unknown breach whatever store answered. Each adapter (gRPC, HTTP) maps the
// kinds to its own codes in one table; an error of no kind is internal.
var (
	// ErrInvalidArgument: the request is malformed; retrying it unchanged fails again.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound: a named thing (a breach) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the corpus cannot answer now (closed, shutting down); retry later or elsewhere.
	ErrUnavailable = errors.New("unavailable")
	// ErrNoSpace: the disk is full; nothing committed is lost.
	ErrNoSpace = errors.New("no space left on device")
	// ErrFailedPrecondition: the system is not in a state that allows the call.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnauthenticated: no valid credential came with the call.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: the caller's identity lacks the scope the call needs.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrQuotaExceeded: the caller has used up its quota for now.
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrAlreadyExists: a named thing (a watchlist) to be created exists.
	ErrAlreadyExists = errors.New("already exists")
)

// Errors of the domain, each of a kind above.
var (
	ErrInvalidDigest = NewError(ErrInvalidArgument, "invalid digest")
	ErrInvalidBreach = NewError(ErrInvalidArgument, "invalid breach")
	ErrInvalidBatch  = NewError(ErrInvalidArgument, "invalid batch")
	// ErrInvalidPasswordHash: a password hash of the wrong length or not hex.
	ErrInvalidPasswordHash = NewError(ErrInvalidArgument, "invalid password hash")
	ErrUnknownBreach       = NewError(ErrNotFound, "unknown breach")
	ErrUnknownWatchlist    = NewError(ErrNotFound, "unknown watchlist")
	// ErrClosed is returned by every call on a closed corpus.
	ErrClosed = NewError(ErrUnavailable, "corpus is closed: shutting down")
	// ErrEmptyImport is returned for an import that received no digests: it
	// would commit an empty breach, so nothing is committed.
	ErrEmptyImport = NewError(ErrInvalidArgument, "import received no digests")
)

// NewError returns an error with message msg whose kind (for errors.Is) is kind.
func NewError(kind error, msg string) error { return &kindError{msg: msg, kind: kind} }

// Errorf formats a message as fmt.Errorf does (%w included) and gives the
// error kind, without the kind's own text in the message.
func Errorf(kind error, format string, a ...any) error {
	err := fmt.Errorf(format, a...)
	return &kindError{msg: err.Error(), kind: kind, wrapped: errors.Unwrap(err)}
}

type kindError struct {
	msg     string
	kind    error
	wrapped error // from Errorf's %w, if any
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Unwrap() []error {
	if e.wrapped == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.wrapped}
}

// quoteMax bounds the quoted form of a caller's string in an error message.
const quoteMax = 80

// Quote returns s quoted for an error message. A long or hostile value is
// cut (at a rune boundary) so that its quoted form, escapes included, stays
// within 80 bytes, and its full length is noted: a message never grows with
// what the caller sent.
func Quote(s string) string {
	q := strconv.Quote(s)
	if len(q) <= quoteMax {
		return q
	}
	// Grow the prefix a rune at a time (an invalid byte counts as one) while
	// its quoted form leaves room for the length note.
	cut := 0
	for cut < len(s) {
		_, size := utf8.DecodeRuneInString(s[cut:])
		if len(strconv.Quote(s[:cut+size])) > quoteMax-8 {
			break
		}
		cut += size
	}
	return strconv.Quote(s[:cut]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}
