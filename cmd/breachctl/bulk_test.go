package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/dump"
	"github.com/breachd/breachd/internal/stdintest"
	"github.com/breachd/breachd/synth"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

const goldenInput = `email,name
alice@example.com,Alice
 BOB@Example.com ,Bob
carol@example.com,"Carol, the third"
not-an-email,Nobody
"broken,Quote
"dave,with,comma"@example.com,Dave
alice@example.com,Alice again
erin@b\u00fccher.example,Erin
=cmd|'/C calc'!A0,Mallory
-frank@example.com,Frank
`

func TestBulkGolden(t *testing.T) {
	t.Parallel()
	addr := serveStore(t, "alice@example.com", "bob@example.com", "erin@bücher.example")
	in := filepath.Join(t.TempDir(), "in.csv")
	os.WriteFile(in, []byte(strings.ReplaceAll(goldenInput, `\u00fc`, "ü")), 0o644)
	for _, tt := range []struct {
		golden string
		args   []string
	}{
		{"check.csv.golden", []string{"--format", "csv"}},
		{"check.jsonl.golden", []string{"--format", "jsonl"}},
		{"check-only-exposed.csv.golden", []string{"--only-exposed"}},
		{"check-only-exposed.jsonl.golden", []string{"--only-exposed", "--format", "jsonl"}},
	} {
		t.Run(tt.golden, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"check", "--addr", addr, "--file", in}, tt.args...)
			if err := run(t.Context(), args, &stdout, &stderr); err != nil {
				t.Fatalf("run = %v\n%s", err, stderr.String())
			}
			golden(t, tt.golden, stdout.Bytes())
			if !strings.Contains(stderr.String(), "checked 10 rows: 4 exposed, 4 invalid") {
				t.Errorf("summary = %q", stderr.String())
			}
		})
	}
	// Every JSON line is valid JSON.
	var stdout bytes.Buffer
	run(t.Context(), []string{"check", "--addr", addr, "--file", in, "--format", "jsonl"}, &stdout, &bytes.Buffer{})
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("invalid JSON line %q: %v", line, err)
		}
	}
}

func TestBreachesGolden(t *testing.T) {
	t.Parallel()
	addr := serveStore(t, "alice@example.com", "bob@example.com")
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"breaches", "--addr", addr}, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	golden(t, "breaches.golden", stdout.Bytes())
}

func TestFailOnExposed(t *testing.T) {
	t.Parallel()
	addr := serveStore(t, "alice@example.com")
	in := filepath.Join(t.TempDir(), "in.txt")
	os.WriteFile(in, []byte("nobody@example.com\n"), 0o644)
	args := []string{"check", "--addr", addr, "--fail-on-exposed", "--file", in, "--out", filepath.Join(t.TempDir(), "out.csv")}
	if err := run(t.Context(), args, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatalf("no exposure: run = %v, want nil", err)
	}
	os.WriteFile(in, []byte("nobody@example.com\nAlice@example.com\n"), 0o644)
	if err := run(t.Context(), args, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, errExposed) {
		t.Fatalf("exposure: run = %v, want errExposed", err)
	}
}

// TestMisreadInput: an input read the wrong way fails, never answers. A
// user-base export whose header names its address column otherwise
// (user_id,email_address) was read as one address a line, and its exposed
// user reported clean with exit status 0.
func TestMisreadInput(t *testing.T) {
	t.Parallel()
	addr := serveStore(t, "lschmidt@hotmail.com")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	users := write("users.csv", "user_id,email_address\n7,lschmidt@hotmail.com\n8,nobody@example.com\n")
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr error  // nil: success
		say     string // in the error or the report
	}{
		{"column missing", []string{"--file", users, "--fail-on-exposed"}, dump.ErrNoColumn, "pass --column email_address"},
		{"column named", []string{"--file", users, "--column", "email_address", "--fail-on-exposed"}, errExposed, "2,lschmidt@hotmail.com,yes,Alpha,"},
		{"csv rows as emails", []string{"--file", write("rows.txt", "7,lschmidt@hotmail.com\n8,nobody@example.com\n")}, errInvalid, "every one of the 2 rows is invalid"},
		{"over the threshold", []string{"--file", write("dirty.txt", "lschmidt@hotmail.com\nx\ny\n")}, errInvalid, "2 of 3 rows (66.7%) are invalid, more than --max-invalid 0.5"},
		{"under a raised threshold", []string{"--file", write("dirty2.txt", "lschmidt@hotmail.com\nx\ny\n"), "--max-invalid", "0.7"}, nil, "lschmidt@hotmail.com,yes"},
		{"fail on invalid", []string{"--file", write("one.txt", "lschmidt@hotmail.com\nx\nnobody@example.com\n"), "--fail-on-invalid"}, errInvalid, "1 of 3 rows are invalid (--fail-on-invalid)"},
		{"empty", []string{"--file", write("empty.txt", "")}, errInvalid, "the input has no rows"},
		{"single invalid address", []string{"7,lschmidt@hotmail.com"}, errInvalid, "no address given is valid"},
		{"a spreadsheet", []string{"--file", write("users.xlsx", "PK\x03\x04\x14\x00\x00\x00rest of a zip")}, dump.ErrNotText, "export it as CSV"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), append([]string{"check", "--addr", addr}, tc.args...), &stdout, &stderr)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("run = %v, want %v\n%s", err, tc.wantErr, stderr.String())
			}
			if all := fmt.Sprint(err) + stdout.String(); !strings.Contains(all, tc.say) {
				t.Fatalf("run = %v with report\n%s\nwant it to say %q", err, stdout.String(), tc.say)
			}
			if tc.wantErr != nil && tc.wantErr != errExposed && exitCode(err) != exitInvalid {
				t.Fatalf("run = %v: exit status %d, want %d", err, exitCode(err), exitInvalid)
			}
			if errors.Is(err, errInvalid) && strings.Contains(stdout.String(), "corpus version") {
				t.Fatalf("nothing was checked, yet the run names a corpus version:\n%s", stdout.String())
			}
		})
	}
}

// TestOutDevNull checks that a report to a device (nothing to fsync) works.
func TestOutDevNull(t *testing.T) {
	t.Parallel()
	addr := serveStore(t, "alice@example.com")
	in := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(in, []byte("alice@example.com\nnobody@example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"check", "--addr", addr, "--file", in, "--out", os.DevNull}, &bytes.Buffer{}, &stderr)
	if err != nil || !strings.Contains(stderr.String(), "checked 2 rows: 1 exposed") {
		t.Fatalf("check --out %s = %v, stderr %q", os.DevNull, err, stderr.String())
	}
}

// sweep is a corpus in the daemon plus an input mixing its dump with
// accounts that are not in it.
type sweep struct {
	addr      string
	input     string
	corpus    map[string]bool // canonical accounts in the corpus
	outsiders map[string]bool
	malformed int
	rows      int
}

func newSweep(t *testing.T, corpusRows, outsiderRows int) *sweep {
	t.Helper()
	dir := t.TempDir()
	var dump, acc bytes.Buffer
	st, err := synth.Generate(&dump, synth.Options{Seed: 5, Records: corpusRows, Accounts: &acc})
	if err != nil {
		t.Fatal(err)
	}
	accounts := strings.Fields(acc.String())
	var odump, oacc bytes.Buffer
	if _, err := synth.Generate(&odump, synth.Options{Seed: 6, Records: outsiderRows, Accounts: &oacc, Domain: "outside.example", DirtyPercent: -1}); err != nil {
		t.Fatal(err)
	}
	s := &sweep{addr: serveStore(t, accounts...), corpus: map[string]bool{}, outsiders: map[string]bool{},
		malformed: st.Malformed, rows: corpusRows + outsiderRows}
	for _, a := range accounts {
		s.corpus[a] = true
	}
	for _, a := range strings.Fields(oacc.String()) {
		s.outsiders[a] = true
	}
	s.input = filepath.Join(dir, "sweep.csv")
	rest := odump.Bytes()[bytes.IndexByte(odump.Bytes(), '\n')+1:] // drop the second header
	os.WriteFile(s.input, append(dump.Bytes(), rest...), 0o644)
	return s
}

type reportLine struct {
	Line       int64
	Identifier string
	Exposed    bool
	Breaches   []string
	Error      string
}

func readReport(t *testing.T, path string) []reportLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []reportLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r reportLine
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("report line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// TestBulkSweep checks a whole sweep: every corpus row is exposed in the
// right breach, every other row is not, invalid rows are reported, and rows
// come out in input order.
func TestBulkSweep(t *testing.T) {
	t.Parallel()
	s := newSweep(t, 20000, 10000)
	out := filepath.Join(t.TempDir(), "report.jsonl")
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"check", "--addr", s.addr, "--file", s.input, "--format", "jsonl", "--out", out, "--batch", "777"}, &bytes.Buffer{}, &stderr)
	if err != nil {
		t.Fatalf("run = %v\n%s", err, stderr.String())
	}
	report := readReport(t, out)
	if len(report) != s.rows {
		t.Fatalf("report has %d rows, want %d", len(report), s.rows)
	}
	invalid := 0
	for i, r := range report {
		if i > 0 && r.Line <= report[i-1].Line {
			t.Fatalf("report out of order at %d: line %d after %d", i, r.Line, report[i-1].Line)
		}
		if r.Error != "" {
			invalid++
			continue
		}
		c, err := canon.Email(r.Identifier)
		if err != nil {
			t.Fatalf("row %d %q checked but invalid: %v", r.Line, r.Identifier, err)
		}
		switch {
		case s.corpus[c]:
			if !r.Exposed || !slices.Equal(r.Breaches, []string{"Alpha"}) {
				t.Fatalf("corpus row %d %q: exposed=%v %v", r.Line, r.Identifier, r.Exposed, r.Breaches)
			}
		case s.outsiders[c]:
			if r.Exposed {
				t.Fatalf("outsider row %d %q reported exposed", r.Line, r.Identifier)
			}
		default:
			t.Fatalf("row %d %q is neither in the corpus nor an outsider", r.Line, r.Identifier)
		}
	}
	if invalid != s.malformed {
		t.Fatalf("%d invalid rows, want %d", invalid, s.malformed)
	}
}

// TestResume interrupts a resumable run part-way, then runs the same
// command again, and checks the report equals that of a clean run.
func TestResume(t *testing.T) {
	s := newSweep(t, 30000, 20000)
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.csv")
	if err := run(t.Context(), []string{"check", "--addr", s.addr, "--file", s.input, "--out", clean}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(clean)

	old := checkpointEvery
	checkpointEvery = 0
	defer func() { checkpointEvery = old }()
	out := filepath.Join(dir, "resumed.csv")
	args := []string{"check", "--addr", s.addr, "--file", s.input, "--out", out, "--resume", "--batch", "500", "--in-flight", "1"}
	for attempt := 0; ; attempt++ {
		if attempt > 50 {
			t.Fatal("run never completed")
		}
		ctx, cancel := context.WithCancel(t.Context())
		// Interrupt as soon as the checkpoint has moved on.
		go func() {
			defer cancel()
			before, _ := os.ReadFile(checkpointPath(out))
			for ctx.Err() == nil {
				now, _ := os.ReadFile(checkpointPath(out))
				if len(now) > 0 && !bytes.Equal(now, before) {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		err := run(ctx, args, &bytes.Buffer{}, &bytes.Buffer{})
		cancel()
		if err == nil {
			if attempt == 0 {
				t.Fatal("the first run was never interrupted")
			}
			break
		}
		// As if the process died after flushing rows its checkpoint does not cover.
		f, _ := os.OpenFile(out, os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprintln(f, "999999,garbage@example.com,no,,")
		f.Close()
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		t.Fatalf("resumed report (%d bytes) differs from a clean run (%d bytes)", len(got), len(want))
	}
	if _, err := os.Stat(checkpointPath(out)); !os.IsNotExist(err) {
		t.Fatalf("checkpoint left behind after completion: %v", err)
	}
}

// TestResumeKeepsVersion: a resumed run whose remaining rows are all
// invalid (none answered this time) still names the corpus version its
// earlier rows were answered at, in its summary and its checkpoint; it
// said 0.
func TestResumeKeepsVersion(t *testing.T) {
	t.Parallel()
	addr := serveStore(t, "alice@example.com")
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(in, []byte("alice@example.com\nbob@example.com\nx\ny\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.csv")
	args := []string{"check", "--addr", addr, "--file", in, "--out", out, "--max-invalid", "1"}
	if err := run(t.Context(), args, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	// As if a resumable run had stopped after its first two rows.
	report, _ := os.ReadFile(out)
	lines := strings.SplitAfter(string(report), "\n")
	head := strings.Join(lines[:3], "") // the header and two rows
	if err := os.WriteFile(out, []byte(head), 0o644); err != nil {
		t.Fatal(err)
	}
	c := bulkConfig{file: in, column: "email", format: "csv"}
	fp, err := fingerprint(c, int64(len("alice@example.com\nbob@example.com\nx\ny\n")))
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := json.Marshal(checkpoint{Fingerprint: fp, OutBytes: int64(len(head)), Totals: counters{Rows: 2, Exposed: 1}, CorpusVersion: 1})
	if err := os.WriteFile(checkpointPath(out), cp, 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if err := run(t.Context(), append(args, "--resume"), &bytes.Buffer{}, &stderr); err != nil {
		t.Fatal(err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "resuming at input row 3") || !strings.Contains(stderr.String(), "checked 4 rows: 1 exposed, 2 invalid") ||
		!strings.Contains(stderr.String(), "corpus version 1\n") {
		t.Fatalf("the resumed run said %q, want it to resume at row 3 and name corpus version 1", stderr.String())
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, report) {
		t.Fatalf("resumed report:\n%s\nwant:\n%s", got, report)
	}
}

// TestReportStopsAtUnanswered: when the answers end (a cancelled stream
// ends without an error) before a row with a digest, the writer stops
// there. A checkpoint after it would count the rows without a digest
// written past the gap, and a resumed report would hold them twice and
// lack the rows passed over. Deterministic: TestResume hit it about once
// in a hundred loaded runs.
func TestReportStopsAtUnanswered(t *testing.T) {
	t.Parallel()
	for _, cancelled := range []bool{true, false} {
		t.Run(fmt.Sprintf("cancelled=%v", cancelled), func(t *testing.T) {
			dir := t.TempDir()
			input := filepath.Join(dir, "in.txt")
			os.WriteFile(input, []byte("x\n"), 0o644)
			c := bulkConfig{file: input, out: filepath.Join(dir, "report.csv"), format: "csv", resume: true}
			out, err := openOutput(context.Background(), c, 2, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer out.close()
			rw, _ := newRowWriter("csv", false, false)
			ok, bad := func(n int64) dump.Row { return dump.Row{Line: n, Value: fmt.Sprintf("a%d@example.com", n)} },
				func(n int64) dump.Row { return dump.Row{Line: n, Value: "x", Reject: "not an address"} }
			queue := make(chan *chunk, 2)
			queue <- &chunk{rows: []dump.Row{ok(1), bad(2), ok(3), bad(4)}}
			queue <- &chunk{rows: []dump.Row{bad(5), ok(6)}}
			close(queue)
			ctx, cancel := context.WithCancel(t.Context())
			if cancelled {
				cancel()
			}
			defer cancel()
			var done, exposed atomic.Int64
			// (No lastCheckpoint: every chunk's end is checkpointed.)
			rep := &report{c: c, out: out, rw: rw, queue: queue, done: &done, exposed: &exposed}
			err = rep.run(ctx, func(yield func(answer, error) bool) {
				yield(answer{BulkResult: client.BulkResult{Index: 0}}, nil) // row 1's, then the end
			})
			if err == nil {
				t.Fatal("the run succeeded without an answer for row 3")
			}
			if rep.tot.Rows != 2 {
				t.Errorf("%d rows counted, want 2 (the rows before row 3)", rep.tot.Rows)
			}
			if cp, err := readCheckpoint(checkpointPath(c.out)); err == nil && cp.Totals.Rows != 2 {
				t.Errorf("the checkpoint counts %d rows; the report holds rows 1 and 2 before the gap", cp.Totals.Rows)
			}
		})
	}
}

// TestUsageRefusals: flags that cannot go together, or that do not apply
// to the run, are refused before anything is read or dialled, never
// ignored.
func TestUsageRefusals(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"check", "--resume", "--file", "-", "--out", "x"},
		{"check", "--file", "x.csv", "--context", "signup"},
		{"check", "--file", "x.csv", "--digests", "--column", "mail"},
		{"check", "--column", "mail", "a@example.com"},
		{"check", "--out", "report.csv", "a@example.com"},
		{"check", "--only-exposed", "a@example.com"},
		{"check", "--assess", "--private", "--file", "x.csv"},
		{"check", "--assess", "a@example.com"},
		{"check", "--file", "x.csv", "--max-invalid", "2"},
		{"check", "--file", "x.csv", "--batch", "0"},
		{"check", "--file", "x.csv", "--batch", "10001"},
		{"check", "--file", "x.csv", "--report-format", "xml"},
		{"watch", "add", "users", "--digests", "a@example.com"},
		{"watch", "remove", "users", "--column", "mail", "a@example.com"},
		{"watch", "add", "users", "--file", "x.csv", "--digests", "--column", "mail"},
		{"health", "--service", "breachd.v1.ExposureService", "--readyz", "http://127.0.0.1:1/readyz"},
	} {
		var stderr bytes.Buffer
		if err := run(t.Context(), append(args, "--addr", "127.0.0.1:1"), &bytes.Buffer{}, &stderr); err != errUsage || stderr.Len() == 0 {
			t.Errorf("check %q = %v (%q), want errUsage with a reason", args, err, stderr.String())
		}
	}
}

// TestAppendJSONString: the report's strings are what encoding/json
// writes (without HTML escaping), on the plain fast path and off it.
func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "alice@example.com", "Sega Pass", `a"b`, `a\b`, "tab\there", "line\nbreak\r",
		"\x00\x1f\x7f", "bücher@例え.jp", "bad \xff utf-8", "end\xe2\x82"} {
		got := appendJSONString([]byte("x"), s)
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		enc.Encode(s)
		if string(got) != "x"+strings.TrimSuffix(want.String(), "\n") {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got[1:], want.String())
		}
	}
}

// TestPrintable: what a CSV report to a terminal shows of a row: the row
// itself, but a control character, a rune no terminal shows or a byte
// that is not UTF-8 written as an escape, so no row reaches the terminal
// as an escape sequence.
func TestPrintable(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"alice@example.com", "alice@example.com"},
		{`a"b c@例え.jp`, `a"b c@例え.jp`},
		{"\x1b]0;owned\x07x@y.z", `\x1b]0;owned\ax@y.z`},
		{"\u009b31mred", `\u009b31mred`},
		{"bad \xff", `bad \xff`},
		{"zero\u200bwidth", `zero\u200bwidth`},
	} {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestCheckStdinInterrupted: a sweep of stdin stops when interrupted, also
// while the pipe it reads is idle. Ctrl-C used to wait for the pipe's next
// bytes: for ever, if its writer had nothing more to say. Not parallel: it
// gives the process another stdin.
func TestCheckStdinInterrupted(t *testing.T) {
	addr := serveStore(t, "alice@example.com")
	for _, tc := range []struct{ name, written string }{
		{"before any row", ""}, // the reader waits to detect the format
		{"after some rows", "email\nalice@example.com\nbob@example.com\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdintest.Pipe(t).WriteString(tc.written)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"check", "--addr", addr, "--file", "-", "--out", filepath.Join(t.TempDir(), "out.csv")}, &bytes.Buffer{}, &bytes.Buffer{})
			}()
			time.Sleep(200 * time.Millisecond)
			cancel()
			expectInterrupted(t, done)
		})
	}
}

// TestCheckLiveFeed: rows from a pipe whose writer pauses are answered and
// written out at each pause, not when a block fills or the pipe closes:
// 'producer | breachctl check --file -' follows a live feed. The writer
// stays open until the end; a sweep that waited for more would write
// nothing (the 10 s deadline). Not parallel: it gives the process another
// stdin.
func TestCheckLiveFeed(t *testing.T) {
	addr := serveStore(t, "alice@example.com", "carol@example.com")
	w := stdintest.Pipe(t)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), []string{"check", "--addr", addr, "--file", "-", "--format", "jsonl", "--out", out}, &bytes.Buffer{}, &bytes.Buffer{})
	}()
	// report waits for the report to hold n lines, and returns them.
	report := func(n int) []string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(out)
			if lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); len(b) > 0 && len(lines) >= n {
				return lines
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 10 s the report holds %q, want %d rows", b, n)
			}
			time.Sleep(10 * time.Millisecond) // polls a file another goroutine writes
		}
	}
	w.WriteString("email\nalice@example.com\nbob@example.com\n")
	report(2)
	w.WriteString("not an address\ncarol@example.com\ndave@exa")
	report(4) // whole lines only
	w.WriteString("mple.com\n")
	report(5)
	// A pause after rows that need no answer: nothing else would write
	// them out (they waited for the next answer).
	w.WriteString("still not one\n")
	got := report(6)
	w.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{`"alice@example.com","exposed":true`, `"bob@example.com","exposed":false`, `"not an address"`,
		`"carol@example.com","exposed":true`, `"dave@example.com","exposed":false`, `"still not one"`} {
		if i >= len(got) || !strings.Contains(got[i], want) {
			t.Fatalf("report row %d: %q, want it to hold %s", i+1, got, want)
		}
	}
}

// TestCheckLiveFeedPauses: a live feed of valid and invalid rows in
// random runs, pausing after each: after every pause the report holds
// every row written so far, in order, whatever the mix (a pause after
// rows all invalid, after a chunk whose answers come later, or both).
// Not parallel: it gives the process another stdin.
func TestCheckLiveFeedPauses(t *testing.T) {
	addr := serveStore(t, "alice@example.com")
	w := stdintest.Pipe(t)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), []string{"check", "--addr", addr, "--file", "-", "--format", "jsonl", "--out", out}, &bytes.Buffer{}, &bytes.Buffer{})
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	var want []string
	w.WriteString("email\n")
	for round := range 40 {
		var batch strings.Builder
		for j := range 1 + rng.IntN(4) {
			var row string
			switch rng.IntN(3) {
			case 0:
				row = fmt.Sprintf("not an address %d.%d", round, j)
			case 1:
				row = "alice@example.com"
			default:
				row = fmt.Sprintf("user%d.%d@example.com", round, j)
			}
			want = append(want, row)
			batch.WriteString(row + "\n")
		}
		w.WriteString(batch.String())
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(out)
			if n := bytes.Count(b, []byte{'\n'}); n >= len(want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: after 10 s the report holds %q, want %d rows", round, b, len(want))
			}
			time.Sleep(5 * time.Millisecond) // polls a file another goroutine writes
		}
	}
	w.Close()
	if err := <-done; err != nil && !errors.Is(err, errInvalid) {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("the report has %d rows, want %d", len(lines), len(want))
	}
	for i, row := range want {
		if !strings.Contains(lines[i], fmt.Sprintf(`{"line":%d,"identifier":%q`, i+2, row)) {
			t.Fatalf("report row %d is %s, want %q", i+1, lines[i], row)
		}
	}
}

// TestCheckOutFIFO: a report written to a named pipe. With a reader it is
// written whole; without one, or with a reader that stops reading, the
// sweep still stops when interrupted. It used to open the pipe for reading
// and writing (so its open never waited, nor did a reader's going away end
// it), and then wait for ever, past Ctrl-C, once the pipe was full.
func TestCheckOutFIFO(t *testing.T) {
	t.Parallel()
	addr := serveStore(t, "alice@example.com")
	in := filepath.Join(t.TempDir(), "in.csv")
	var b strings.Builder
	b.WriteString("email\n")
	const rows = 5000 // a report of well over a pipe's 64 KiB
	for i := range rows {
		fmt.Fprintf(&b, "user%d@example.com\n", i)
	}
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		reader string // "all", "idle" or "none"
	}{{"read whole", "all"}, {"reader idle", "idle"}, {"no reader", "none"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fifo := filepath.Join(t.TempDir(), "report")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Skipf("no named pipes here: %v", err)
			}
			read := make(chan int, 1)
			switch tc.reader {
			case "all":
				go func() {
					f, err := os.Open(fifo)
					if err != nil {
						read <- -1
						return
					}
					defer f.Close()
					n := 0
					for s := bufio.NewScanner(f); s.Scan(); {
						n++
					}
					read <- n
				}()
			case "idle":
				f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"check", "--addr", addr, "--file", in, "--out", fifo}, &bytes.Buffer{}, &bytes.Buffer{})
			}()
			if tc.reader == "all" {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if n := <-read; n != rows+1 {
					t.Fatalf("the reader read %d lines, want %d", n, rows+1)
				}
				return
			}
			time.Sleep(300 * time.Millisecond)
			cancel()
			expectInterrupted(t, done)
		})
	}
}

// expectInterrupted waits for a run that was just interrupted to end with
// context.Canceled.
func expectInterrupted(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("check still runs 10 s after it was interrupted")
	}
}
