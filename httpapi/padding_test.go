package httpapi_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
)

// TestPaddingMerge checks padded answers for prefixes with few and many
// real lines: 1 (the usual case), 500 (padding still fills the answer to
// 800-1,000 lines) and 1,100 (more than padding ever reaches: 0-200 lines
// are added). Every real line comes once, in order, with its count, among
// padding lines of count 0, and the answer has as many lines as the rule
// says.
func TestPaddingMerge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := store.DefaultOptions()
	o.MemTableSize = 4 << 20
	pw, err := store.OpenPasswords(ctx, store.PasswordDir(t.TempDir(), breachd.SHA1), breachd.SHA1, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pw.Close() })
	r := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	want := map[string][]string{} // prefix -> its real lines, in order
	var recs []breachd.PasswordRecord
	for _, pc := range []struct {
		prefix uint32
		n      int
	}{{0xABCDE, 1}, {0x12345, 500}, {0xFEDCB, 1100}} {
		for range pc.n {
			var rec breachd.PasswordRecord
			for i := range breachd.SHA1.Size() {
				rec.Hash[i] = byte(r.Uint32())
			}
			rec.Hash[0], rec.Hash[1] = byte(pc.prefix>>12), byte(pc.prefix>>4)
			rec.Hash[2] = byte(pc.prefix<<4) | rec.Hash[2]&0x0f
			rec.Count = 1 + r.Uint64N(1000)
			recs = append(recs, rec)
			h := strings.ToUpper(hex.EncodeToString(rec.Hash[:breachd.SHA1.Size()]))
			want[h[:5]] = append(want[h[:5]], fmt.Sprintf("%s:%d", h[5:], rec.Count))
		}
		counts[fmt.Sprintf("%05X", pc.prefix)] = pc.n
	}
	for _, lines := range want {
		slices.Sort(lines)
	}
	if _, err := pw.Import(ctx, breachd.Breach{Name: "PP", Title: "PP"}, 0, func(yield func([]breachd.PasswordRecord, error) bool) { yield(recs, nil) }); err != nil {
		t.Fatal(err)
	}
	forEachServer(t, func(t *testing.T, server string) {
		f := newFixtureOn(t, server, false, true, service.WithPasswords(breachd.SHA1, pw))
		for prefix, n := range counts {
			for range 30 {
				rep := f.get(t, "/range/"+prefix, "Add-Padding", "true")
				if rep.code != 200 {
					t.Fatalf("/range/%s = %d", prefix, rep.code)
				}
				lines := strings.Split(string(rep.body), "\r\n")
				if least := max(800, n); len(lines) < least || len(lines) > least+200 {
					t.Fatalf("/range/%s (%d real lines) has %d lines, want %d to %d", prefix, n, len(lines), least, least+200)
				}
				var real []string
				for i, l := range lines {
					if i > 0 && l <= lines[i-1] {
						t.Fatalf("/range/%s: line %q after %q", prefix, l, lines[i-1])
					}
					if !strings.HasSuffix(l, ":0") {
						real = append(real, l)
					}
				}
				if strings.Join(real, "\n") != strings.Join(want[prefix], "\n") {
					t.Fatalf("/range/%s: %d real lines, want the corpus's %d in order", prefix, len(real), len(want[prefix]))
				}
			}
		}
	})
}
