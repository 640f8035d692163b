package breachd_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/breachd/breachd"
)

func TestParseDigest(t *testing.T) {
	valid := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"lower", valid, false},
		{"upper", strings.ToUpper(valid), false},
		{"short", valid[:62], true},
		{"long", valid + "00", true},
		{"not hex", strings.Repeat("zz", 32), true},
		{"empty", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := breachd.ParseDigest(tt.in)
			if tt.wantErr {
				if !errors.Is(err, breachd.ErrInvalidDigest) {
					t.Fatalf("ParseDigest(%q) error = %v, want ErrInvalidDigest", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDigest(%q) = %v", tt.in, err)
			}
			if got := d.String(); got != strings.ToLower(tt.in) {
				t.Fatalf("ParseDigest(%q).String() = %q", tt.in, got)
			}
		})
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add(strings.Repeat("0f", 32))
	f.Add("xyz")
	f.Add(strings.Repeat("G", 64))
	f.Fuzz(func(t *testing.T, s string) {
		d, err := breachd.ParseDigest(s)
		if err != nil {
			return
		}
		if !strings.EqualFold(d.String(), s) {
			t.Fatalf("ParseDigest(%q) round trip = %q", s, d.String())
		}
	})
}

func TestBreachValidate(t *testing.T) {
	tests := []struct {
		name string
		b    breachd.Breach
		ok   bool
	}{
		{"ok", breachd.Breach{Name: "SegaPass", Title: "Sega Pass", BreachDate: "2011-06-17"}, true},
		{"empty name", breachd.Breach{Title: "x"}, false},
		{"bad name", breachd.Breach{Name: "a b", Title: "x"}, false},
		{"no title", breachd.Breach{Name: "a"}, false},
		{"bad date", breachd.Breach{Name: "a", Title: "x", BreachDate: "17/06/2011"}, false},
		{"negative count", breachd.Breach{Name: "a", Title: "x", PwnCount: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.b.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
