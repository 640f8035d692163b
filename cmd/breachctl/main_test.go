package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/certs/certstest"
	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/daemon/daemontest"
	"github.com/breachd/breachd/quota"
	"github.com/breachd/breachd/store"
)

// serveStore serves a real store holding the given emails in breach "Alpha"
// on 127.0.0.1 and returns its address.
func serveStore(t *testing.T, emails ...string) string {
	t.Helper()
	return serveStoreWith(t, nil, emails...)
}

// serveStoreWith is serveStore with the daemon's configuration changed by
// edit (if not nil).
func serveStoreWith(t *testing.T, edit func(*daemon.Config), emails ...string) string {
	t.Helper()
	srv := daemontest.Start(t, t.TempDir(), edit, nil)
	var ds []breachd.Digest
	for _, e := range emails {
		d, err := canon.Digest(e)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	b := breachd.Breach{Name: "Alpha", Title: "Alpha Inc.", BreachDate: "2011-06-17", DataClasses: []string{"Email addresses", "Names"}}
	if _, err := daemontest.Import(t.Context(), srv, b, ds); err != nil {
		t.Fatal(err)
	}
	return srv.Addr()
}

func TestCheck(t *testing.T) {
	t.Parallel()
	addr := serveStore(t, "alice@example.com")
	var stdout bytes.Buffer
	err := run(t.Context(), []string{"check", "--addr", addr, " Alice@EXAMPLE.com", "bob@example.com", "not-an-email"}, &stdout, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := ` Alice@EXAMPLE.com: exposed in 1 breach(es)
  Alpha (Alpha Inc., 2011-06-17): Email addresses, Names
bob@example.com: not exposed
not-an-email: invalid email: no @
corpus version 1
`
	if got := stdout.String(); got != want {
		t.Fatalf("check output:\n%s\nwant:\n%s", got, want)
	}
}

// TestCheckPrivate: check --private answers as check does, for single
// addresses and for a sweep (the sweep goldens), against a daemon with
// private lookups; against one without, it says why it cannot.
func TestCheckPrivate(t *testing.T) {
	t.Parallel()
	key, err := store.GenerateIndexKey(filepath.Join(t.TempDir(), "index.key"))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveStoreWith(t, func(c *daemon.Config) { c.Emails.IndexKey, c.Emails.Private, c.Emails.BucketMin = key, true, 2 },
		"alice@example.com", "bob@example.com", "erin@bücher.example")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := run(t.Context(), []string{"check", "--private", "--addr", addr, "nobody@example.com"}, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil {
			break // the buckets are counted
		}
		if time.Now().After(deadline) {
			t.Fatalf("check --private: %v", err)
		}
	}
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"check", "--private", "--addr", addr, " Alice@EXAMPLE.com", "carol@example.com"}, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	want := ` Alice@EXAMPLE.com: exposed in 1 breach(es)
  Alpha (Alpha Inc., 2011-06-17): Email addresses, Names
carol@example.com: not exposed
corpus version 1
`
	if got := stdout.String(); got != want {
		t.Fatalf("check --private output:\n%s\nwant:\n%s", got, want)
	}
	in := filepath.Join(t.TempDir(), "in.csv")
	os.WriteFile(in, []byte(strings.ReplaceAll(goldenInput, `\u00fc`, "ü")), 0o644)
	for _, tt := range []struct {
		golden string
		args   []string
	}{
		{"check.csv.golden", []string{"--format", "csv"}},
		{"check.jsonl.golden", []string{"--format", "jsonl"}},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"check", "--private", "--addr", addr, "--file", in}, tt.args...)
		if err := run(t.Context(), args, &stdout, &stderr); err != nil {
			t.Fatalf("run = %v\n%s", err, stderr.String())
		}
		golden(t, tt.golden, stdout.Bytes()) // the plain sweep's
	}
	err = run(t.Context(), []string{"check", "--private", "--addr", serveStore(t, "alice@example.com"), "alice@example.com"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "private lookups are off") {
		t.Fatalf("check --private against a daemon without private lookups: %v", err)
	}
}

// TestCheckAnswersToFullDisk: answers that cannot be written (a full
// disk, here /dev/full) fail the run, rather than exit 0 with none.
func TestCheckAnswersToFullDisk(t *testing.T) {
	t.Parallel()
	full := devFull(t)
	addr := serveStore(t, "alice@example.com")
	err := run(t.Context(), []string{"check", "--addr", addr, "alice@example.com", "bob@example.com"}, full, &bytes.Buffer{})
	if exitCode(err) != exitError || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("check with its answers to a full disk = %v (exit %d), want the write's error", err, exitCode(err))
	}
}

func TestCheckNoDaemon(t *testing.T) {
	t.Parallel()
	err := run(t.Context(), []string{"check", "--addr", "127.0.0.1:1", "a@example.com"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("check without a daemon = %v, want an error naming the address", err)
	}
}

func TestHash(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"hash", " Alice@Example.COM"}, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	want := "canonical  alice@example.com\nsha256     ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976\n"
	if stdout.String() != want {
		t.Fatalf("hash output = %q, want %q", stdout.String(), want)
	}
	stdout.Reset()
	run(t.Context(), []string{"hash", "--base64", "alice@example.com"}, &stdout, &bytes.Buffer{})
	if stdout.String() != "/42YGfwOEr8NJIkuRZh+JJoo3Og2qFytYOKOqqjG2XY=\n" {
		t.Fatalf("hash --base64 = %q", stdout.String())
	}
	if err := run(t.Context(), []string{"hash", "nope"}, &stdout, &bytes.Buffer{}); err == nil {
		t.Fatal("hash of an invalid email succeeded")
	}
}

// TestTLSAndAPIKey checks breachctl against a daemon that wants TLS and an
// API key: the key from --api-key-file or BREACHD_API_KEY, the connection
// flags before or after the command, and what a missing key says.
func TestTLSAndAPIKey(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ca := certstest.NewCA(t, dir, "ca")
	cert, key, _ := ca.Issue(t, "server", certstest.Server("breachd"))
	apiKey, err := auth.CreateKey(data, "ctl", []auth.Scope{auth.ScopeCheck}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "api-key")
	if err := os.WriteFile(keyFile, []byte(apiKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := daemontest.Start(t, data, func(c *daemon.Config) {
		c.TLS = &daemon.TLS{Cert: cert, Key: key}
		c.Quota.Default = quota.Limits{Rate: 1000, Burst: 1000}
		c.MetricsAddr = "127.0.0.1:0"
	}, nil)
	d, _ := canon.Digest("alice@example.com")
	if _, err := daemontest.Import(t.Context(), srv, breachd.Breach{Name: "Alpha", Title: "Alpha"}, []breachd.Digest{d}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--ca", ca.File, "--api-key-file", keyFile, "check", "--addr", srv.Addr(), "alice@example.com"},
		{"check", "--addr", srv.Addr(), "--ca", ca.File, "--api-key-file", keyFile, "alice@example.com"},
	} {
		var out bytes.Buffer
		if err := run(t.Context(), args, &out, &bytes.Buffer{}); err != nil || !strings.Contains(out.String(), "exposed in 1 breach") {
			t.Fatalf("breachctl %q = %v, %q", args, err, out.String())
		}
	}
	t.Setenv("BREACHD_API_KEY", apiKey)
	var out bytes.Buffer
	if err := run(t.Context(), []string{"breaches", "--addr", srv.Addr(), "--ca", ca.File}, &out, &bytes.Buffer{}); err != nil || !strings.Contains(out.String(), "Alpha") {
		t.Fatalf("breaches with BREACHD_API_KEY = %v, %q", err, out.String())
	}
	t.Setenv("BREACHD_API_KEY", "")
	err = run(t.Context(), []string{"check", "--addr", srv.Addr(), "--ca", ca.File, "a@example.com"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "no credential") || !strings.Contains(err.Error(), "--api-key-file") {
		t.Fatalf("check without a key = %v, want the daemon's 'no credential' message and where the key goes", err)
	}
	// The mistakes of a connection's settings each say how to mend them.
	plain := serveStore(t, "alice@example.com")
	for _, tc := range []struct {
		name, addr string
		flags      []string
		want       string
	}{
		{"no TLS to a TLS daemon", srv.Addr(), nil, "if it serves TLS, dial it with TLS: --ca"},
		{"TLS to a daemon without", plain, []string{"--ca", ca.File}, "does not serve TLS on this address"},
		{"the metrics address", srv.MetricsAddr(), nil, "answers HTTP/1.1, not gRPC"},
		{"the system's roots", srv.Addr(), []string{"--tls"}, "pass --ca with the CA that issued"},
		{"a name the certificate lacks", srv.Addr(), []string{"--ca", ca.File, "--server-name", "elsewhere.example"}, "give one with --server-name"},
	} {
		args := append([]string{"check", "--addr", tc.addr}, tc.flags...)
		args = append(args, "a@example.com")
		err := run(t.Context(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: check = %v, want advice containing %q", tc.name, err, tc.want)
		}
	}
	err = run(t.Context(), []string{"check", "--addr", srv.Addr(), "--api-key-file", keyFile, "a@example.com"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "only sent over TLS") {
		t.Fatalf("an API key without TLS = %v, want a refusal to send it", err)
	}
	var hout bytes.Buffer
	if err := run(t.Context(), []string{"health", "--addr", srv.Addr(), "--ca", ca.File}, &hout, &bytes.Buffer{}); err != nil || strings.TrimSpace(hout.String()) != "SERVING" {
		t.Fatalf("health = %v, %q", err, hout.String())
	}
	// The container probe: /readyz, whatever TLS and certificates ask.
	hout.Reset()
	if err := run(t.Context(), []string{"health", "--readyz", "http://" + srv.MetricsAddr() + "/readyz"}, &hout, &bytes.Buffer{}); err != nil || strings.TrimSpace(hout.String()) != "ready" {
		t.Fatalf("health --readyz = %v, %q", err, hout.String())
	}
	if err := run(t.Context(), []string{"health", "--readyz", "http://" + srv.MetricsAddr() + "/nothing"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Fatal("health --readyz of a URL that is not ready succeeded")
	}
}

// TestWatchAddInvalidAddress: an invalid address among those given to
// 'watch add' changes nothing and is an invalid row (exit status 4), not
// a daemon's error (it was status 1, reported as the daemon's).
func TestWatchAddInvalidAddress(t *testing.T) {
	t.Parallel()
	srv := daemontest.Start(t, t.TempDir(), nil, nil)
	admin := "unix://" + srv.AdminSocket()
	ctl := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append([]string{"--addr", admin}, args...), &stdout, &stderr)
		return stdout.String() + stderr.String(), err
	}
	if out, err := ctl("watch", "create", "users"); err != nil {
		t.Fatal(err, out)
	}
	// A name that would be no NATS subject is refused at creation.
	for _, name := range []string{"users.", "a..b"} {
		if out, err := ctl("watch", "create", name); err == nil || !strings.Contains(err.Error(), "may not end in '.' or hold") {
			t.Fatalf("watch create %s = %v\n%s", name, err, out)
		}
	}
	out, err := ctl("watch", "add", "users", "alice@example.com", "not an address")
	if exitCode(err) != exitInvalid || !strings.Contains(err.Error(), "not an address: invalid email") {
		t.Fatalf("watch add with an invalid address = %v (exit status %d), want status %d naming it\n%s", err, exitCode(err), exitInvalid, out)
	}
	if out, err := ctl("watch", "list"); err != nil || !regexp.MustCompile(`(?m)^users +0 `).MatchString(out) {
		t.Fatalf("watch list = %v\n%s\nwant users with 0 accounts", err, out)
	}
	if out, err := ctl("watch", "add", "users", "alice@example.com"); err != nil || !strings.Contains(out, "1 accounts on it") {
		t.Fatalf("watch add = %v\n%s", err, out)
	}
}

// TestWatchEventsCursorFile: a batch job's bookmark moves past events only
// once they were written: events that could not be written (a full disk,
// here /dev/full) are printed again by the next run.
func TestWatchEventsCursorFile(t *testing.T) {
	t.Parallel()
	full := devFull(t)
	srv := daemontest.Start(t, t.TempDir(), nil, nil)
	admin := "unix://" + srv.AdminSocket()
	ctl := func(stdout io.Writer, args ...string) error {
		return run(t.Context(), append([]string{"--addr", admin}, args...), stdout, &bytes.Buffer{})
	}
	if err := ctl(io.Discard, "watch", "create", "users"); err != nil {
		t.Fatal(err)
	}
	if err := ctl(io.Discard, "watch", "add", "users", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	d, _ := canon.Digest("alice@example.com")
	if _, err := daemontest.Import(t.Context(), srv, breachd.Breach{Name: "Alpha", Title: "Alpha"}, []breachd.Digest{d}); err != nil {
		t.Fatal(err)
	}
	cursorFile := filepath.Join(t.TempDir(), "cursor")
	var out bytes.Buffer
	for deadline := time.Now().Add(30 * time.Second); out.Len() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no exposure event after the import")
		}
		if err := ctl(&out, "watch", "events", "users", "--since", ""); err != nil {
			t.Fatal(err)
		}
	}
	want := out.String()

	if err := ctl(full, "watch", "events", "users", "--cursor-file", cursorFile); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("watch events to a full disk = %v, want the write's error", err)
	}
	if _, err := os.Stat(cursorFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the cursor file after a failed write: %v, want none", err)
	}
	out.Reset()
	if err := ctl(&out, "watch", "events", "users", "--cursor-file", cursorFile); err != nil || out.String() != want {
		t.Fatalf("watch events after the failure = %v\n%s\nwant the event again:\n%s", err, out.String(), want)
	}
	out.Reset()
	if err := ctl(&out, "watch", "events", "users", "--cursor-file", cursorFile); err != nil || out.Len() != 0 {
		t.Fatalf("watch events from the bookmark = %v, %q; want nothing new", err, out.String())
	}
}

// TestCheckOutIsInput: a report named as the input file, by its name or
// through a link, is refused before anything is opened: the input is
// left whole (it was truncated by the report's open, then read as far as
// its first buffer).
func TestCheckOutIsInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "users.csv")
	const users = "id,email\n1,alice@example.com\n"
	if err := os.WriteFile(in, []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.csv")
	if err := os.Symlink(in, link); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{in, link, filepath.Join(dir, ".", "users.csv")} {
		var stderr bytes.Buffer
		err := run(t.Context(), []string{"check", "--addr", "127.0.0.1:1", "--file", in, "--out", out}, &bytes.Buffer{}, &stderr)
		if exitCode(err) != exitUsage || !strings.Contains(stderr.String(), "is the input file") {
			t.Fatalf("--out %s = %v (exit %d)\n%s; want a usage error naming it", out, err, exitCode(err), stderr.String())
		}
		if b, _ := os.ReadFile(in); string(b) != users {
			t.Fatalf("the input after --out %s: %q", out, b)
		}
	}
}

// devFull opens /dev/full, a file every write to fails as on a full disk,
// closed when the test ends; the test is skipped without one.
func devFull(t *testing.T) *os.File {
	t.Helper()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full to stand for a full disk: %v", err)
	}
	t.Cleanup(func() { full.Close() })
	return full
}
