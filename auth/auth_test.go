package auth_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
)

func TestParseScopes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []auth.Scope
		err  bool
	}{
		{"check", []auth.Scope{auth.ScopeCheck}, false},
		{"check, bulk,check", []auth.Scope{auth.ScopeCheck, auth.ScopeBulk}, false},
		{"admin,bulk,check", []auth.Scope{auth.ScopeAdmin, auth.ScopeBulk, auth.ScopeCheck}, false},
		{"", nil, true},
		{"root", nil, true},
		{"check,", nil, true},
	}
	for _, tt := range tests {
		got, err := auth.ParseScopes(tt.in)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("ParseScopes(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.err)
		}
		if err != nil && !errors.Is(err, breachd.ErrInvalidArgument) {
			t.Errorf("ParseScopes(%q) error %v is not ErrInvalidArgument", tt.in, err)
		}
	}
}

func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"check", "check,bulk,admin", "", ",,", "bulk, admin"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := auth.ParseScopes(s)
		if err != nil {
			if len(err.Error()) > 300 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		for _, sc := range got {
			if !slices.Contains(auth.Scopes, sc) {
				t.Fatalf("ParseScopes(%q) gave unknown scope %q", s, sc)
			}
		}
	})
}

func TestKeysAndCerts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := auth.CreateKey(dir, "signup", []auth.Scope{auth.ScopeCheck}, 5, 10)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := auth.OpenKeyring(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewAuthenticator(ring, []auth.CertIdentity{
		{Match: "CN=gw", Principal: auth.Principal{Name: "gw", Scopes: []auth.Scope{auth.ScopeCheck}}},
		{Match: "URI:spiffe://corp/sweeper", Principal: auth.Principal{Name: "sweeper", Scopes: []auth.Scope{auth.ScopeBulk}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.FromKey(key)
	if err != nil || p.Name != "signup" || p.Rate != 5 || p.Burst != 10 || !p.Has(auth.ScopeCheck) || p.Has(auth.ScopeAdmin) {
		t.Fatalf("FromKey = %+v, %v", p, err)
	}
	if _, err := a.FromKey(key + "x"); !errors.Is(err, breachd.ErrUnauthenticated) {
		t.Fatalf("FromKey(wrong) = %v", err)
	}
	u, _ := url.Parse("spiffe://corp/sweeper")
	for _, tc := range []struct {
		cert *x509.Certificate
		want string
	}{
		{&x509.Certificate{Subject: pkix.Name{CommonName: "gw"}}, "gw"},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "other"}, URIs: []*url.URL{u}}, "sweeper"},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "stranger"}}, ""},
	} {
		p, err := a.FromCert(tc.cert)
		if got := ""; err == nil {
			got = p.Name
			if got != tc.want || p.Via != "mtls" {
				t.Errorf("FromCert(%s) = %+v", tc.cert.Subject.CommonName, p)
			}
		} else if tc.want != "" || !errors.Is(err, breachd.ErrUnauthenticated) {
			t.Errorf("FromCert(%s) = %v", tc.cert.Subject.CommonName, err)
		}
	}
	if err := auth.Require(p, auth.ScopeAdmin, "ImportBreach"); !errors.Is(err, breachd.ErrPermissionDenied) || !strings.Contains(err.Error(), `needs scope "admin"`) {
		t.Fatalf("Require = %v", err)
	}
	if _, err := auth.NewAuthenticator(nil, []auth.CertIdentity{{Match: "gw", Principal: auth.Principal{Name: "x"}}}); err == nil {
		t.Fatal("a match without CN=, DNS: or URI: was accepted")
	}

	// Concurrent creates lose nothing; the ring sees them after Reload.
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := auth.CreateKey(dir, fmt.Sprintf("k%d", i), []auth.Scope{auth.ScopeBulk}, 0, 0); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if changed, err := ring.Reload(); err != nil || !changed || ring.Len() != 11 {
		t.Fatalf("Reload = %v, %v with %d keys, want 11", changed, err, ring.Len())
	}
	if changed, _ := ring.Reload(); changed {
		t.Fatal("Reload of an unchanged file re-read it")
	}
	if err := auth.RevokeKey(dir, "signup"); err != nil {
		t.Fatal(err)
	}
	ring.Reload()
	if _, err := a.FromKey(key); !errors.Is(err, breachd.ErrUnauthenticated) {
		t.Fatalf("a revoked key = %v", err)
	}
}
