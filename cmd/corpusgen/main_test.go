package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/breachd/breachd/synth"
)

// TestSweep checks a sweep file: the asked number of rows, the asked share
// of them accounts of the corpus, every other row outside it, no repeats.
func TestSweep(t *testing.T) {
	t.Parallel()
	var accounts bytes.Buffer
	if _, err := synth.Generate(&bytes.Buffer{}, synth.Options{Seed: 5, Records: 20_000, DirtyPercent: 3, Accounts: &accounts}); err != nil {
		t.Fatal(err)
	}
	inCorpus := map[string]bool{}
	for _, a := range strings.Fields(accounts.String()) {
		inCorpus[a] = true
	}
	for _, pct := range []float64{0, 10, 50, 100} {
		var out, errOut bytes.Buffer
		args := []string{"--seed", "5", "--records", "20000", "--sweep", "4000", "--exposed", strconv.FormatFloat(pct, 'f', -1, 64)}
		if err := run(context.Background(), args, &out, &errOut); err != nil {
			t.Fatalf("--exposed %v: %v", pct, err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if lines[0] != "email" || len(lines) != 4001 {
			t.Fatalf("--exposed %v: header %q and %d rows, want email and 4000", pct, lines[0], len(lines)-1)
		}
		seen, in := map[string]bool{}, 0
		for _, l := range lines[1:] {
			if seen[l] {
				t.Fatalf("--exposed %v: %q twice", pct, l)
			}
			seen[l] = true
			if inCorpus[l] {
				in++
			} else if !strings.HasSuffix(l, ".outsiders.invalid") {
				t.Fatalf("--exposed %v: %q is neither a corpus account nor an outsider", pct, l)
			}
		}
		if want := int(4000 * pct / 100); in != want {
			t.Errorf("--exposed %v: %d rows in the corpus, want %d", pct, in, want)
		}
	}
}
