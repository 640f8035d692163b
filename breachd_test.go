package breachd_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/breachd/breachd"
)

func TestParseDigest(t *testing.T) {
	t.Parallel()
	valid := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		in      string
		wantErr string // what the error says ("" for none)
	}{
		{"lower", valid, ""},
		{"upper", strings.ToUpper(valid), ""},
		{"short", valid[:62], "got 62 hex characters, want 64"},
		{"long", valid + "00", "got 66 hex characters, want 64"},
		{"not hex", strings.Repeat("zz", 32), `64 characters, not all hex ("z" at character 1)`},
		{"empty", "", "got 0 hex characters"},
		{"0x prefix", "0x" + valid, "a 0x prefix: give the 64 hex characters alone"},
		{"base64", base64.StdEncoding.EncodeToString(make([]byte, 32)), "base64 perhaps"},
		{"a CSV row's comma", valid + ",", `65 characters, not all hex ("," at character 65)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := breachd.ParseDigest(tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, breachd.ErrInvalidDigest) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDigest(%q) error = %v, want ErrInvalidDigest saying %q", tt.in, err, tt.wantErr)
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
	t.Parallel()
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
		{"dated today", breachd.Breach{Name: "a", Title: "x", BreachDate: time.Now().UTC().Format(time.DateOnly)}, true},
		{"dated tomorrow (a zone ahead of UTC)", breachd.Breach{Name: "a", Title: "x", BreachDate: time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)}, true},
		{"dated the day after", breachd.Breach{Name: "a", Title: "x", BreachDate: time.Now().UTC().AddDate(0, 0, 2).Format(time.DateOnly)}, false},
		{"a typo for 2026", breachd.Breach{Name: "a", Title: "x", BreachDate: "2062-06-17"}, false},
		{"negative count", breachd.Breach{Name: "a", Title: "x", PwnCount: -1}, false},
		{"65-byte name", breachd.Breach{Name: strings.Repeat("n", 65), Title: "x"}, false},
		{"title at limit", breachd.Breach{Name: "a", Title: strings.Repeat("t", breachd.MaxTitleLen)}, true},
		{"title over limit", breachd.Breach{Name: "a", Title: strings.Repeat("t", breachd.MaxTitleLen+1)}, false},
		{"domain over limit", breachd.Breach{Name: "a", Title: "x", Domain: strings.Repeat("d", breachd.MaxDomainLen+1)}, false},
		{"description at limit", breachd.Breach{Name: "a", Title: "x", Description: strings.Repeat("d", breachd.MaxDescriptionLen)}, true},
		{"description over limit", breachd.Breach{Name: "a", Title: "x", Description: strings.Repeat("d", 900_000)}, false},
		{"title not UTF-8", breachd.Breach{Name: "a", Title: "\xff"}, false},
		{"too many data classes", breachd.Breach{Name: "a", Title: "x", DataClasses: make([]string, breachd.MaxDataClasses+1)}, false},
		{"empty data class", breachd.Breach{Name: "a", Title: "x", DataClasses: []string{"Emails", ""}}, false},
		{"data class over limit", breachd.Breach{Name: "a", Title: "x", DataClasses: []string{strings.Repeat("c", breachd.MaxDataClassLen+1)}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.b.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && (!errors.Is(err, breachd.ErrInvalidBreach) || !errors.Is(err, breachd.ErrInvalidArgument) || len(err.Error()) > 300) {
				t.Fatalf("Validate() = %q, want a short ErrInvalidBreach of kind ErrInvalidArgument", err)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"Nope", `"Nope"`},
		{strings.Repeat("x", 78), `"` + strings.Repeat("x", 78) + `"`},
		{strings.Repeat("x", 500_000), `"` + strings.Repeat("x", 70) + `"... (500000 bytes)`},
		// The cut never splits a rune: 69 bytes of x, then a 2-byte é.
		{strings.Repeat("x", 69) + "é" + strings.Repeat("y", 10), `"` + strings.Repeat("x", 69) + `"... (81 bytes)`},
		// Escapes count: each invalid byte quotes as 4 characters.
		{strings.Repeat("\x9a", 64), `"` + strings.Repeat(`\x9a`, 17) + `"... (64 bytes)`},
	}
	for _, tt := range tests {
		got := breachd.Quote(tt.in)
		if got != tt.want {
			t.Errorf("Quote(%d bytes) = %s, want %s", len(tt.in), got, tt.want)
		}
		if len(got) > 100 {
			t.Errorf("Quote(%d bytes) is %d bytes long", len(tt.in), len(got))
		}
	}
}

// TestErrorKinds checks that every error of the domain is of its kind, and
// that Errorf keeps both its kind and what it wraps without the kind's text.
func FuzzQuote(f *testing.F) {
	f.Add("Nope")
	f.Add(strings.Repeat("\xff", 200))
	f.Add(strings.Repeat("é", 100))
	f.Fuzz(func(t *testing.T, s string) {
		if q := breachd.Quote(s); len(q) > 100 {
			t.Fatalf("Quote(%q) = %d bytes", s, len(q))
		}
	})
}

func TestErrorKinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err, kind error
	}{
		{breachd.ErrInvalidDigest, breachd.ErrInvalidArgument},
		{breachd.ErrInvalidBreach, breachd.ErrInvalidArgument},
		{breachd.ErrInvalidBatch, breachd.ErrInvalidArgument},
		{breachd.ErrEmptyImport, breachd.ErrInvalidArgument},
		{breachd.ErrUnknownBreach, breachd.ErrNotFound},
		{breachd.ErrClosed, breachd.ErrUnavailable},
		{fmt.Errorf("op: %w", breachd.ErrClosed), breachd.ErrUnavailable},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.kind) {
			t.Errorf("errors.Is(%v, %v) = false", tt.err, tt.kind)
		}
	}
	cause := errors.New("cause")
	err := breachd.Errorf(breachd.ErrNotFound, "thing %d: %w", 7, cause)
	if err.Error() != "thing 7: cause" || !errors.Is(err, breachd.ErrNotFound) || !errors.Is(err, cause) {
		t.Fatalf("Errorf = %q (kind %v, cause %v)", err, errors.Is(err, breachd.ErrNotFound), errors.Is(err, cause))
	}
}

func TestValidateBatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, "empty"}, {31, "got 31 bytes"}, {32, ""}, {32 * breachd.MaxBatch, ""}, {32 * (breachd.MaxBatch + 1), "got 10001 digests"},
	} {
		err := breachd.ValidateBatch(make([]byte, tc.n))
		if (tc.want == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), tc.want) || !errors.Is(err, breachd.ErrInvalidBatch))) {
			t.Errorf("ValidateBatch(%d bytes) = %v, want %q", tc.n, err, tc.want)
		}
	}
}
