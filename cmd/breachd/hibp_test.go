package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/synth"
)

// writePwned writes a synthetic password corpus of kind k: one file, or
// (perPrefix) a directory of per-prefix files of SUFFIX:COUNT lines, as
// the Pwned Passwords downloader writes them.
func writePwned(t *testing.T, dir, name string, k breachd.HashKind, n int, perPrefix bool) string {
	t.Helper()
	var buf bytes.Buffer
	if err := synth.WritePwned(&buf, synth.PwnedOptions{Seed: 7, Hashes: n, Kind: k}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if !perPrefix {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	files := map[string]*bytes.Buffer{}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		l := sc.Text()
		if files[l[:5]] == nil {
			files[l[:5]] = &bytes.Buffer{}
		}
		files[l[:5]].WriteString(l[5:] + "\n")
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, b := range files {
		if err := os.WriteFile(filepath.Join(path, p+".txt"), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TestHIBPClient points a real Have I Been Pwned client library (the hibp
// npm package, unchanged) at a daemon through its baseUrl option, over TLS
// with a breachd API key, after password releases of both kinds were
// imported into the running daemon with 'breachd import --kind --addr'.
func TestHIBPClient(t *testing.T) {
	t.Parallel()
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed: the hibp client library cannot be run here")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the hibp client library cannot be run here")
	}
	// Install the pinned library into a scratch copy of the client.
	js := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "client.mjs"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "httpapi", "testdata", "hibp-js", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(js, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	install.Dir = js
	if out, err := install.CombinedOutput(); err != nil {
		t.Skipf("npm ci failed (no registry reachable?): %v\n%s", err, out)
	}
	// On each of the HTTP face's servers (http.server).
	for _, server := range []string{"net/http", "fasthttp"} {
		t.Run(server, func(t *testing.T) { testHIBPClient(ctx, t, js, server) })
	}
}

func testHIBPClient(ctx context.Context, t *testing.T, js, server string) {
	s := startSecure(t, "http:\n  addr: 127.0.0.1:0\n  server: "+server+"\n")
	if s.http == "" {
		t.Fatal("the daemon did not report its HTTP API")
	}
	keyFile := filepath.Join(s.dir, "admin.key")
	if err := os.WriteFile(keyFile, []byte(s.keys["admin"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(s.dir, "pp.json")
	if err := os.WriteFile(rel, []byte(`{"Name":"PwnedPasswords","Title":"Pwned Passwords (synthetic)"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		k         breachd.HashKind
		perPrefix bool
	}{{breachd.SHA1, false}, {breachd.NTLM, true}} {
		path := writePwned(t, s.dir, "pwned-"+tc.k.String(), tc.k, 20_000, tc.perPrefix)
		out := runOK(t, "import", "--kind", tc.k.String(), "--addr", s.addr, "--ca", s.ca.File, "--api-key-file", keyFile, "--manifest", rel, path)
		if !strings.Contains(out, "new hashes") || !strings.Contains(out, "20005") {
			t.Fatalf("import --kind %s:\n%s", tc.k, out)
		}
	}

	node := exec.CommandContext(ctx, "node", "client.mjs")
	node.Dir = js
	node.Env = append(os.Environ(),
		"NODE_EXTRA_CA_CERTS="+s.ca.File,
		"PP_BASE="+s.http,
		"HIBP_BASE="+s.http+"/api/v3",
		"HIBP_KEY="+s.keys["checker"],
		"ACCOUNT="+s.sega.accounts[0],
		"NOBODY=nobody@outsiders.invalid",
		"BREACH=SegaPass",
	)
	var stderr bytes.Buffer
	node.Stderr = &stderr
	raw, err := node.Output()
	if err != nil {
		t.Fatalf("node client.mjs: %v\n%s", err, stderr.String())
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("client output %q: %v", raw, err)
	}
	want := map[string]func(string) error{
		"range": contains(`"1E4C9B93F3F0682250B6CF8331B7EE68FD8":9545824`),
		"rangePaddedNTLM": func(s string) error {
			var r struct{ Entries, Password, Zeros int }
			if err := json.Unmarshal([]byte(s), &r); err != nil {
				return err
			}
			if r.Entries < 800 || r.Entries > 1000 || r.Password != 9545824 || r.Zeros < r.Entries-25 {
				return fmt.Errorf("want 800-1000 entries, all but the few real ones of count 0, and 'password' at 9545824")
			}
			return nil
		},
		"pwnedPassword":            exactly(`9545824`),
		"pwnedPasswordAbsent":      exactly(`0`),
		"breachedAccount":          contains(`"Name":"SegaPass","Title":"SegaPass title"`, `"BreachDate":"2011-06-17"`, `"DataClasses":["Email addresses","Passwords"]`),
		"breachedAccountTruncated": exactly(`[{"Name":"SegaPass"}]`),
		"breachedAccountNobody":    exactly(`null`),
		"breachedAccountBadKey":    contains(`"error"`),
		"breaches":                 contains(`"Name":"SegaPass"`),
		"breachesOtherDomain":      exactly(`[]`),
		"breach":                   contains(`"Name":"SegaPass"`, `"IsVerified":false`),
		"breachLowerCase":          contains(`"Name":"SegaPass"`), // as upstream finds "adobe"
		"breachUnknown":            exactly(`null`),
		"dataClasses":              exactly(`["Email addresses","Passwords"]`),
		"latestBreach":             contains(`"Name":"SegaPass"`),
	}
	// The HTTP requests are counted by route and code, scraped as
	// Prometheus would.
	resp, err := http.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, series := range []string{
		`breachd_http_request_duration_seconds_count{code="200",route="range"}`,
		`breachd_http_request_duration_seconds_count{code="404",route="breachedaccount"}`,
		`breachd_http_request_duration_seconds_count{code="401",route="breachedaccount"}`,
	} {
		if !strings.Contains(string(metrics), series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	for name, check := range want {
		v, ok := got[name]
		if !ok {
			t.Errorf("%s: no result", name)
			continue
		}
		if err := check(string(v)); err != nil {
			t.Errorf("%s = %.300s: %v", name, v, err)
		}
	}
}

func contains(subs ...string) func(string) error {
	return func(s string) error {
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				return fmt.Errorf("want it to contain %s", sub)
			}
		}
		return nil
	}
}

func exactly(want string) func(string) error {
	return func(s string) error {
		if s != want {
			return fmt.Errorf("want %s", want)
		}
		return nil
	}
}
