package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/daemon/daemontest"
	"github.com/breachd/breachd/policy"
)

// serveAssessing serves accounts exposed0..exposed(n-1)@example.com under
// a report-only policy: an exposed account at login would be stepped up.
func serveAssessing(t *testing.T, n int) string {
	t.Helper()
	yes := true
	srv := daemontest.Start(t, t.TempDir(), func(c *daemon.Config) {
		c.Policy.Default = policy.Policy{Mode: policy.ReportOnly, Rules: []policy.Rule{
			{Name: "exposed-login", When: policy.Conditions{EmailExposed: &yes, Contexts: []breachd.AssessContext{breachd.ContextLogin}}, Decision: breachd.StepUp},
		}}
	}, nil)
	var ds []breachd.Digest
	for i := range n {
		d, _ := canon.Digest(fmt.Sprintf("exposed%d@example.com", i))
		ds = append(ds, d)
	}
	if _, err := daemontest.Import(t.Context(), srv, breachd.Breach{Name: "Alpha", Title: "Alpha"}, ds); err != nil {
		t.Fatal(err)
	}
	return srv.Addr()
}

// TestBulkAssess: a sweep with --assess reports, in input order, the
// policy's decision for every row (1,200 rows: enough to keep 32 callers
// busy and their answers out of order).
func TestBulkAssess(t *testing.T) {
	t.Parallel()
	addr := serveAssessing(t, 400)
	var in bytes.Buffer
	in.WriteString("email\n")
	for i := range 1200 {
		if i%3 == 0 {
			fmt.Fprintf(&in, "exposed%d@example.com\n", i/3)
		} else {
			fmt.Fprintf(&in, "clean%d@example.com\n", i)
		}
	}
	in.WriteString("not-an-address\n")
	file := filepath.Join(t.TempDir(), "users.csv")
	os.WriteFile(file, in.Bytes(), 0o600)
	for _, tt := range []struct{ ctx, wouldBe string }{{"login", "step_up"}, {"signup", "allow"}} {
		var stdout, stderr bytes.Buffer
		if err := run(t.Context(), []string{"check", "--addr", addr, "--file", file, "--assess", "--context", tt.ctx, "--format", "jsonl"}, &stdout, &stderr); err != nil {
			t.Fatalf("%s: %v\n%s", tt.ctx, err, stderr.String())
		}
		sc := bufio.NewScanner(&stdout)
		rows := 0
		for sc.Scan() {
			var r struct {
				Line       int64
				Identifier string
				Exposed    bool
				Error      string
			}
			var raw map[string]any
			json.Unmarshal(sc.Bytes(), &raw)
			json.Unmarshal(sc.Bytes(), &r)
			rows++
			if want := int64(rows + 1); r.Line != want {
				t.Fatalf("%s: row %d has line %d: out of order", tt.ctx, rows, r.Line)
			}
			if r.Error != "" {
				if raw["decision"] != nil {
					t.Errorf("an invalid row has a decision: %s", sc.Text())
				}
				continue
			}
			exposed := strings.HasPrefix(r.Identifier, "exposed")
			wouldBe := "allow"
			if exposed {
				wouldBe = tt.wouldBe
			}
			if r.Exposed != exposed || raw["decision"] != "allow" || raw["would_be"] != wouldBe {
				t.Fatalf("%s: %s; want exposed %v, decision allow (report-only), would_be %s", tt.ctx, sc.Text(), exposed, wouldBe)
			}
		}
		if rows != 1201 {
			t.Errorf("%s: %d rows reported, want 1201", tt.ctx, rows)
		}
	}
}

func TestAssessCommand(t *testing.T) {
	t.Parallel()
	addr := serveAssessing(t, 1)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("hunter2\n"), 0o600)
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"assess", "--addr", addr, "--password-file", pw, "exposed0@example.com"}, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	for _, want := range []string{"exposed0@example.com: allow (report-only; enforcing would answer step_up)", "reasons: exposed-login",
		"Alpha (Alpha, ): password unknown", "password seen 0 times"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("breachctl assess output lacks %q:\n%s", want, stdout.String())
		}
	}
	// Saved by Notepad (a byte order mark, CRLF): the same password, not
	// one with the mark hashed in.
	os.WriteFile(pw, []byte("\xef\xbb\xbfhunter2\r\n"), 0o600)
	if got, err := readPassword(t.Context(), pw); err != nil || got != "hunter2" {
		t.Errorf("the password of a file saved by Notepad = %q, %v; want hunter2", got, err)
	}
	if err := run(t.Context(), []string{"assess", "--addr", addr, "--context", "logout", "a@b.c"}, &stdout, &stderr); err == nil {
		t.Error("an unknown context was accepted")
	}
	// An invalid address is an invalid row (exit status 4), as check's,
	// not a connection or server error.
	if err := run(t.Context(), []string{"assess", "--addr", addr, "not an address"}, &stdout, &stderr); exitCode(err) != exitInvalid || !strings.Contains(err.Error(), "invalid email") {
		t.Errorf("assess of an invalid address = %v (exit status %d), want status %d saying why", err, exitCode(err), exitInvalid)
	}
}
