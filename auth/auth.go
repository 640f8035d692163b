package auth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/breachd/breachd"
)

// Scope is a permission a principal holds.
type Scope string

// The scopes. Health needs none; reflection needs an identity but no scope.
const (
	ScopeCheck Scope = "check" // Check, ListBreaches, GetBreach
	ScopeBulk  Scope = "bulk"  // CheckStream
	ScopeAdmin Scope = "admin" // ImportBreach and anything that changes the corpus
)

// Scopes lists every scope, in order.
var Scopes = []Scope{ScopeCheck, ScopeBulk, ScopeAdmin}

// ParseScopes parses a comma-separated list such as "check,bulk".
func ParseScopes(s string) ([]Scope, error) {
	var out []Scope
	for _, f := range strings.Split(s, ",") {
		sc := Scope(strings.TrimSpace(f))
		if !slices.Contains(Scopes, sc) {
			return nil, breachd.Errorf(breachd.ErrInvalidArgument, "unknown scope %s: want a comma-separated list of check, bulk and admin", breachd.Quote(string(sc)))
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// Principal is an authenticated identity.
type Principal struct {
	Name   string
	Scopes []Scope
	// Rate (per second) and Burst of the principal's quota; 0 means the
	// daemon's default.
	Rate  float64
	Burst int
	// Via says how it authenticated: "api-key" or "mtls".
	Via   string
	key   [32]byte // an API key's hash: Valid finds it in the keyring again
	match string   // a certificate identity's Match: Valid finds it in the table again
}

// Has reports whether p holds scope s.
func (p *Principal) Has(s Scope) bool { return slices.Contains(p.Scopes, s) }

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal ctx carries, if any.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(*Principal)
	return p, ok
}

// CertIdentity maps client certificates to a principal: a certificate
// matches when its subject common name, or one of its DNS or URI SANs,
// equals Match ("CN=sso-gateway", "DNS:sso.internal", "URI:spiffe://corp/sso").
type CertIdentity struct {
	Match     string
	Principal Principal
}

// ValidateCertIdentity checks the form of a Match.
func ValidateCertIdentity(c CertIdentity) error {
	kind, v, ok := strings.Cut(c.Match, ":")
	if kind == "CN=" || strings.HasPrefix(c.Match, "CN=") {
		kind, v, ok = "CN", strings.TrimPrefix(c.Match, "CN="), true
	}
	switch {
	case !ok || v == "" || (kind != "CN" && kind != "DNS" && kind != "URI"):
		return breachd.Errorf(breachd.ErrInvalidArgument, "match %s: want CN=NAME, DNS:NAME or URI:URI", breachd.Quote(c.Match))
	case c.Principal.Name == "":
		return breachd.Errorf(breachd.ErrInvalidArgument, "match %s: the principal has no name", breachd.Quote(c.Match))
	}
	return nil
}

// certNames returns the identities a certificate presents, in Match form.
func certNames(cert *x509.Certificate) []string {
	var out []string
	if cn := cert.Subject.CommonName; cn != "" {
		out = append(out, "CN="+cn)
	}
	for _, d := range cert.DNSNames {
		out = append(out, "DNS:"+d)
	}
	for _, u := range cert.URIs {
		out = append(out, "URI:"+u.String())
	}
	return out
}

// Authenticator turns credentials into principals.
type Authenticator struct {
	keys  *Keyring                       // nil: API keys are not accepted
	certs atomic.Pointer[[]CertIdentity] // replaced whole by SetCertIdentities
}

// NewAuthenticator returns an authenticator over a keyring (may be nil) and
// the certificate identities of the configuration.
func NewAuthenticator(keys *Keyring, certs []CertIdentity) (*Authenticator, error) {
	a := &Authenticator{keys: keys}
	if err := a.SetCertIdentities(certs); err != nil {
		return nil, err
	}
	return a, nil
}

// SetCertIdentities replaces the certificate identities (a configuration
// re-read by a running daemon), or returns why certs are not valid and
// keeps those in use. Streams opened under a certificate the new table no
// longer maps, or maps to another principal, no longer stand (Valid).
func (a *Authenticator) SetCertIdentities(certs []CertIdentity) error {
	for _, c := range certs {
		if err := ValidateCertIdentity(c); err != nil {
			return err
		}
	}
	certs = slices.Clone(certs)
	a.certs.Store(&certs)
	return nil
}

// errBadKey is the one answer for a key that is unknown, revoked or
// malformed: which of these it is would tell a guesser too much.
var errBadKey = breachd.NewError(breachd.ErrUnauthenticated,
	"the API key is not valid: send 'authorization: Bearer KEY' with a key from 'breachd keys create'")

// FromKey returns the principal of an API key.
func (a *Authenticator) FromKey(key string) (*Principal, error) {
	if a.keys == nil {
		return nil, breachd.NewError(breachd.ErrUnauthenticated, "this daemon accepts no API keys: authenticate with a client certificate")
	}
	if p := a.keys.lookup(hashKey(key)); p != nil {
		return p, nil
	}
	return nil, errBadKey
}

// Valid reports whether p still stands: an API key's principal while the
// key is in the keyring with the same name and scopes (not revoked, not
// re-created narrower); a certificate's while the configuration maps it.
// A stream opened under p ends when it no longer does.
func (a *Authenticator) Valid(p *Principal) bool {
	if p.Via == "mtls" {
		for _, c := range *a.certs.Load() {
			if c.Match == p.match {
				return c.Principal.Name == p.Name && slices.Equal(c.Principal.Scopes, p.Scopes) &&
					c.Principal.Rate == p.Rate && c.Principal.Burst == p.Burst
			}
		}
		return false
	}
	if p.Via != "api-key" {
		return true
	}
	if a.keys == nil {
		return false
	}
	now := a.keys.lookup(p.key)
	return now != nil && now.Name == p.Name && slices.Equal(now.Scopes, p.Scopes)
}

// FromCert returns the principal a verified client certificate maps to.
func (a *Authenticator) FromCert(cert *x509.Certificate) (*Principal, error) {
	names := certNames(cert)
	certs := *a.certs.Load()
	for i := range certs {
		if slices.Contains(names, certs[i].Match) {
			p := certs[i].Principal
			p.Via, p.match = "mtls", certs[i].Match
			return &p, nil
		}
	}
	return nil, breachd.Errorf(breachd.ErrUnauthenticated, "the client certificate (%s) maps to no principal: add it to the configuration's mtls identities",
		breachd.Quote(strings.Join(names, ", ")))
}

// hashKey is how a key is stored and looked up. Keys are 256 random bits,
// so a plain SHA-256 is enough: there is nothing to brute-force.
func hashKey(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// Require returns nil if p holds s, else a permission error naming both.
func Require(p *Principal, s Scope, what string) error {
	if p.Has(s) {
		return nil
	}
	return breachd.Errorf(breachd.ErrPermissionDenied, "%s needs scope %q, which principal %s does not have (it has %s)",
		what, s, breachd.Quote(p.Name), fmt.Sprint(p.Scopes))
}
