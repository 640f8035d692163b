package canon_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/breachd/breachd/canon"
)

type vectors struct {
	Valid []struct {
		Name, Input, Canonical, SHA256 string
	}
	Invalid []struct {
		Name, Input, Error string
	}
}

func loadVectors(tb testing.TB) vectors {
	tb.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatal(err)
	}
	if len(v.Valid) == 0 || len(v.Invalid) == 0 {
		tb.Fatal("testdata/vectors.json has no vectors")
	}
	return v
}

func TestVectors(t *testing.T) {
	t.Parallel()
	v := loadVectors(t)
	for _, tt := range v.Valid {
		t.Run(tt.Name, func(t *testing.T) {
			got, err := canon.Email(tt.Input)
			if err != nil || got != tt.Canonical {
				t.Fatalf("Email(%q) = %q, %v, want %q", tt.Input, got, err, tt.Canonical)
			}
			d, err := canon.Digest(tt.Input)
			if err != nil || hex.EncodeToString(d[:]) != tt.SHA256 {
				t.Fatalf("Digest(%q) = %x, %v, want %s", tt.Input, d, err, tt.SHA256)
			}
			if again, err := canon.Email(got); err != nil || again != got {
				t.Fatalf("Email is not idempotent: Email(%q) = %q, %v", got, again, err)
			}
		})
	}
	for _, tt := range v.Invalid {
		t.Run(tt.Name, func(t *testing.T) {
			got, err := canon.Email(tt.Input)
			if !errors.Is(err, canon.ErrInvalidEmail) {
				t.Fatalf("Email(%q) = %q, %v, want ErrInvalidEmail", tt.Input, got, err)
			}
			if !strings.Contains(err.Error(), tt.Error) {
				t.Errorf("Email(%q) error = %q, want it to mention %q", tt.Input, err, tt.Error)
			}
		})
	}
}

// FuzzEmail checks the properties every canonical form must have.
func FuzzEmail(f *testing.F) {
	for _, tt := range loadVectors(f).Valid {
		f.Add(tt.Input)
	}
	f.Add("A@B.C")
	f.Add("x@xn--.com")
	f.Add("\u0130@example.com")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := canon.Email(s)
		if err != nil {
			if !errors.Is(err, canon.ErrInvalidEmail) {
				t.Fatalf("Email(%q) error %v does not wrap ErrInvalidEmail", s, err)
			}
			return
		}
		if strings.Count(c, "@") != 1 || strings.TrimSpace(c) != c {
			t.Fatalf("Email(%q) = %q: not a trimmed single-@ address", s, c)
		}
		domain := c[strings.IndexByte(c, '@')+1:]
		for i := 0; i < len(domain); i++ {
			if domain[i] >= 0x80 || (domain[i] >= 'A' && domain[i] <= 'Z') {
				t.Fatalf("Email(%q) = %q: domain not lower-case ASCII", s, c)
			}
		}
	})
}

// FuzzEmailFastPath checks that the ASCII fast paths (Email's, and
// Digest's) agree with the general IDNA path they shortcut, for every input.
func FuzzEmailFastPath(f *testing.F) {
	for _, s := range []string{"a@b.c", "A-1@x-y.example", "a@b--c.com", "a@xn--bcher-kva.example", "a@1.2", "a@b.c-", "_@a.b", "mailto:a@b.c", `"a:b"@c.d`, "a\\b@c.d", "a@b.c.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, fastErr := canon.Email(s)
		slow, slowErr := canon.EmailGeneral(s)
		if fast != slow || (fastErr == nil) != (slowErr == nil) {
			t.Fatalf("Email(%q) = %q, %v; general path = %q, %v", s, fast, fastErr, slow, slowErr)
		}
		// Digest's own fast path (no allocation) hashes the same form.
		d, err := canon.Digest(s)
		if (err == nil) != (fastErr == nil) || (err == nil && d != canon.Sum(fast)) {
			t.Fatalf("Digest(%q) = %x, %v; Sum(Email) = %x, %v", s, d, err, canon.Sum(fast), fastErr)
		}
	})
}

func BenchmarkDigest(b *testing.B) {
	for _, in := range []struct{ name, email string }{
		{"ascii", "  John.Smith1984@Hotmail.com "},
		{"idn", "user@Bücher.example"},
	} {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := canon.Digest(in.email); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
