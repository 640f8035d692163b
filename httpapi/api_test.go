package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/dump"
	"github.com/breachd/breachd/httpapi"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/quota"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The corpus every test answers from: two breaches in upstream's own
// breach JSON (every field), three accounts, and password corpora of both
// kinds with a few known passwords.
const (
	adobeJSON = `{"Name":"Adobe","Title":"Adobe","Domain":"adobe.com","BreachDate":"2013-10-04","AddedDate":"2013-12-04T00:00:00Z","ModifiedDate":"2022-05-15T23:52:49Z","PwnCount":152445165,"Description":"In October 2013, 153 million Adobe accounts were breached.","LogoPath":"https://logos.haveibeenpwned.com/Adobe.png","Attribution":null,"DisclosureUrl":null,"DataClasses":["Email addresses","Password hints","Passwords","Usernames"],"IsVerified":true,"IsFabricated":false,"IsSensitive":false,"IsRetired":false,"IsSpamList":false,"IsMalware":false,"IsSubscriptionFree":false,"IsStealerLog":false}`
	segaJSON  = `{"Name":"SegaPass","Title":"Sega Pass","Domain":"sega.com","BreachDate":"2011-06-17","AddedDate":"2013-12-11T00:00:00Z","PwnCount":1290775,"Description":"In June 2011, Sega Pass was breached.","DataClasses":["Dates of birth","Email addresses","Names","Passwords"],"IsVerified":false}`
)

var (
	both      = "both@example.com"
	adobeOnly = "Adobe.Only@Example.com"
	nobody    = "nobody@example.com"
)

type fixture struct {
	url  string
	logs *logtest.Buffer
	keys map[string]string // principal -> API key
}

func manifest(t testing.TB, js string) breachd.Breach {
	t.Helper()
	b, err := dump.ParseManifest(strings.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digests(t testing.TB, emails ...string) func(func([]breachd.Digest, error) bool) {
	var ds []breachd.Digest
	for _, e := range emails {
		d, err := canon.Digest(e)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	return func(yield func([]breachd.Digest, error) bool) { yield(ds, nil) }
}

func passwords(k breachd.HashKind, pws map[string]uint64) func(func([]breachd.PasswordRecord, error) bool) {
	var rs []breachd.PasswordRecord
	for pw, n := range pws {
		r := breachd.PasswordRecord{Count: n}
		if k == breachd.SHA1 {
			h := sha1.Sum([]byte(pw))
			copy(r.Hash[:], h[:])
		} else {
			r.Hash = dump.NTLM([]byte(pw))
		}
		rs = append(rs, r)
	}
	return func(yield func([]breachd.PasswordRecord, error) bool) { yield(rs, nil) }
}

// knownPasswords share the prefix of "password" (5BAA6) with nothing in
// particular; the golden range files pin their lines.
var knownPasswords = map[string]uint64{"password": 9545824, "123456": 42080000, "hunter2": 17043, "P@ssw0rd": 150000}

// newFixture serves the corpus over real HTTP on 127.0.0.1. With keyed
// set, callers are authenticated (keys for "checker", a check principal
// with a quota of one call, "slow", and "admin", without the check scope).
func newFixture(t *testing.T, keyed, openPublic bool, extra ...service.Option) *fixture {
	t.Helper()
	return newFixtureOn(t, "net/http", keyed, openPublic, extra...)
}

// servers are the HTTP face's servers: ServeHTTP on Go's net/http, and
// Fast on fasthttp.
var servers = []string{"net/http", "fasthttp"}

// forEachServer runs fn once on each server, as a subtest.
func forEachServer(t *testing.T, fn func(t *testing.T, server string)) {
	for _, server := range servers {
		t.Run(server, func(t *testing.T) { fn(t, server) })
	}
}

// newFixtureOn is newFixture on server (one of servers).
func newFixtureOn(t *testing.T, server string, keyed, openPublic bool, extra ...service.Option) *fixture {
	t.Helper()
	api, f := newAPI(t, keyed, openPublic, extra...)
	if server == "fasthttp" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fs := &fasthttp.Server{Handler: api.Fast(), NoDefaultServerHeader: true, NoDefaultContentType: true}
		go fs.Serve(ln)
		t.Cleanup(func() { fs.Shutdown() })
		f.url = "http://" + ln.Addr().String()
		return f
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// newAPI is the HTTP face of newFixture's corpus, not yet served (the
// fixture's url is empty).
func newAPI(t testing.TB, keyed, openPublic bool, extra ...service.Option) (*httpapi.API, *fixture) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	logs := &logtest.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := store.DefaultOptions()
	o.Logger, o.Index = log, store.IndexInline
	o.MemTableSize = 4 << 20 // a test's corpora are small: Badger's default is for millions of rows
	st, err := store.Open(ctx, store.EmailDir(dir), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Import(ctx, manifest(t, adobeJSON), digests(t, both, adobeOnly)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Import(ctx, manifest(t, segaJSON), digests(t, both)); err != nil {
		t.Fatal(err)
	}
	opts := []service.Option{}
	for _, k := range breachd.HashKinds {
		pw, err := store.OpenPasswords(ctx, store.PasswordDir(dir, k), k, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pw.Close() })
		if _, err := pw.Import(ctx, breachd.Breach{Name: "PP", Title: "PP"}, 0, passwords(k, knownPasswords)); err != nil {
			t.Fatal(err)
		}
		opts = append(opts, service.WithPasswords(k, pw))
	}
	ho := httpapi.Options{Logger: log, OpenPublic: openPublic}
	f := &fixture{logs: logs, keys: map[string]string{}}
	if keyed {
		for _, p := range []struct {
			name   string
			scopes []auth.Scope
			rate   float64
			burst  int
		}{{"checker", []auth.Scope{auth.ScopeCheck}, 0, 0}, {"slow", []auth.Scope{auth.ScopeCheck}, 0.01, 1}, {"admin", []auth.Scope{auth.ScopeAdmin}, 0, 0}} {
			key, err := auth.CreateKey(dir, p.name, p.scopes, p.rate, p.burst)
			if err != nil {
				t.Fatal(err)
			}
			f.keys[p.name] = key
		}
		ring, err := auth.OpenKeyring(dir, log)
		if err != nil {
			t.Fatal(err)
		}
		if ho.Authn, err = auth.NewAuthenticator(ring, nil); err != nil {
			t.Fatal(err)
		}
		if ho.Quota, err = quota.New(quota.Limits{Rate: 1000, Burst: 1000}, 4); err != nil {
			t.Fatal(err)
		}
	}
	api, err := httpapi.New(service.New(st, append(opts, extra...)...), ho)
	if err != nil {
		t.Fatal(err)
	}
	return api, f
}

type reply struct {
	code int
	h    http.Header
	body []byte
}

func (f *fixture) get(t *testing.T, path string, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest("GET", f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "breachd-compat-test")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, body}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./httpapi -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s:\ngot:  %q\nwant: %q", name, p, got, want)
	}
}

func sha1Hex(pw string) string {
	h := sha1.Sum([]byte(pw))
	return strings.ToUpper(hex.EncodeToString(h[:]))
}

func ntlmHex(pw string) string {
	h := dump.NTLM([]byte(pw))
	return strings.ToUpper(hex.EncodeToString(h[:16]))
}

// TestCompatibility checks every route against the published API: status
// codes, content types, headers and bodies (golden files).
func TestCompatibility(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, server string) {
		f := newFixtureOn(t, server, false, true)
		pw, nt := sha1Hex("password"), ntlmHex("password")
		for _, tc := range []struct {
			name, path string
			hdr        []string
			code       int
			ctype      string
			golden     string // "" for none
		}{
			// Pwned Passwords: the range API.
			{"range", "/range/" + pw[:5], nil, 200, "text/plain", "range-sha1"},
			{"range lower case", "/range/" + strings.ToLower(pw[:5]), nil, 200, "text/plain", "range-sha1"},
			{"range ntlm", "/range/" + nt[:5] + "?mode=ntlm", nil, 200, "text/plain", "range-ntlm"},
			{"range empty prefix", "/range/00000", nil, 200, "text/plain", "range-empty"},
			{"range too short", "/range/5BAA", nil, 400, "text/plain; charset=utf-8", "range-400"},
			{"range not hex", "/range/5BAAG", nil, 400, "text/plain; charset=utf-8", "range-400"},
			{"range too long", "/range/5BAA61", nil, 400, "text/plain; charset=utf-8", "range-400"},
			{"range bad mode", "/range/5BAA6?mode=md5", nil, 400, "text/plain; charset=utf-8", ""},
			{"range malformed query", "/range/5BAA6?mode=ntlm;x", nil, 400, "text/plain; charset=utf-8", ""},
			{"range mode twice", "/range/5BAA6?mode=ntlm&mode=sha1", nil, 400, "text/plain; charset=utf-8", ""},
			// The v3 API.
			{"breachedaccount truncated", "/api/v3/breachedaccount/" + both, nil, 200, "application/json; charset=utf-8", "breachedaccount-truncated"},
			{"breachedaccount canonicalised", "/api/v3/breachedaccount/" + strings.ToUpper(both), nil, 200, "application/json; charset=utf-8", "breachedaccount-truncated"},
			{"breachedaccount full", "/api/v3/breachedaccount/" + both + "?truncateResponse=false", nil, 200, "application/json; charset=utf-8", "breachedaccount-full"},
			{"breachedaccount parameter in any case", "/api/v3/breachedaccount/" + both + "?TruncateResponse=false", nil, 200, "application/json; charset=utf-8", "breachedaccount-full"},
			{"breachedaccount parameter twice", "/api/v3/breachedaccount/" + both + "?truncateResponse=false&truncateresponse=true", nil, 400, "application/json; charset=utf-8", ""},
			{"breachedaccount domain", "/api/v3/breachedaccount/" + both + "?domain=sega.com", nil, 200, "application/json; charset=utf-8", "breachedaccount-domain"},
			{"breachedaccount verified only", "/api/v3/breachedaccount/" + both + "?includeUnverified=false", nil, 200, "application/json; charset=utf-8", "breachedaccount-verified"},
			{"breachedaccount filtered to none", "/api/v3/breachedaccount/" + both + "?domain=example.org", nil, 404, "", ""},
			{"breachedaccount not pwned", "/api/v3/breachedaccount/" + nobody, nil, 404, "", ""},
			{"breachedaccount malformed", "/api/v3/breachedaccount/not-an-address", nil, 400, "application/json; charset=utf-8", "breachedaccount-400"},
			{"breachedaccount bad bool", "/api/v3/breachedaccount/" + both + "?truncateResponse=maybe", nil, 400, "application/json; charset=utf-8", ""},
			{"breachedaccount malformed query", "/api/v3/breachedaccount/" + both + "?includeUnverified=false;x", nil, 400, "application/json; charset=utf-8", ""},
			{"breaches malformed query", "/api/v3/breaches?domain=adobe.com;x", nil, 400, "application/json; charset=utf-8", ""},
			{"breaches", "/api/v3/breaches", nil, 200, "application/json; charset=utf-8", "breaches"},
			{"breaches domain", "/api/v3/breaches?domain=adobe.com", nil, 200, "application/json; charset=utf-8", "breaches-adobe"},
			{"breaches no match", "/api/v3/breaches?domain=example.org", nil, 200, "application/json; charset=utf-8", "breaches-none"},
			{"breach", "/api/v3/breach/Adobe", nil, 200, "application/json; charset=utf-8", "breach-adobe"},
			{"breach in lower case", "/api/v3/breach/adobe", nil, 200, "application/json; charset=utf-8", "breach-adobe"},
			{"breach unknown", "/api/v3/breach/Nope", nil, 404, "application/json; charset=utf-8", ""},
			{"dataclasses", "/api/v3/dataclasses", nil, 200, "application/json; charset=utf-8", "dataclasses"},
			{"latestbreach", "/api/v3/latestbreach", nil, 200, "application/json; charset=utf-8", "latestbreach"},
			{"unknown route", "/api/v3/pasteaccount/" + both, nil, 404, "application/json; charset=utf-8", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := f.get(t, tc.path, tc.hdr...)
				if r.code != tc.code {
					t.Fatalf("GET %s = %d %s, want %d", tc.path, r.code, r.body, tc.code)
				}
				if ct := r.h.Get("Content-Type"); ct != tc.ctype && !(tc.ctype == "" && r.code == 404 && len(r.body) == 0) {
					t.Errorf("Content-Type %q, want %q", ct, tc.ctype)
				}
				if tc.golden != "" {
					golden(t, tc.golden, r.body)
				}
				if tc.code == 404 && strings.Contains(tc.path, "breachedaccount") && len(r.body) != 0 {
					t.Errorf("a 404 for an account has a body (%q); upstream's has none", r.body)
				}
			})
		}
		// The range answer holds the known password's suffix with its count.
		r := f.get(t, "/range/"+pw[:5])
		if !slices.Contains(strings.Split(string(r.body), "\r\n"), pw[5:]+":9545824") {
			t.Errorf("range %s lacks %s:9545824:\n%s", pw[:5], pw[5:], r.body)
		}
		// No request's address or digest reaches the logs.
		d, _ := canon.Digest(both)
		for _, secret := range []string{both, strings.ToUpper(both), nobody, d.String(), "example.com"} {
			if strings.Contains(strings.ToLower(f.logs.String()), strings.ToLower(secret)) {
				t.Errorf("the logs hold %q:\n%s", secret, f.logs.String())
			}
		}
	})
}

// TestUserAgent: a request without a user agent is refused with 403 on
// every route, as upstream.
func TestUserAgent(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, server string) {
		f := newFixtureOn(t, server, false, true)
		for _, path := range []string{"/range/5BAA6", "/api/v3/breaches", "/api/v3/breachedaccount/" + both} {
			req, _ := http.NewRequest("GET", f.url+path, nil)
			req.Header.Set("User-Agent", "") // sends none
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 403 {
				t.Errorf("GET %s without a user agent = %d, want 403", path, resp.StatusCode)
			}
		}
	})
}

// TestCORS: pages of any origin may call the range API, as upstream's: its
// answers (refusals included) carry Access-Control-Allow-Origin, and the
// preflight is answered without a credential. The rest of the API is not
// opened to other origins.
func TestCORS(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, server string) {
		f := newFixtureOn(t, server, false, true)
		req, _ := http.NewRequest("OPTIONS", f.url+"/range/5BAA6", nil)
		req.Header.Set("Origin", "https://example.org")
		req.Header.Set("Access-Control-Request-Method", "GET")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "GET") {
			t.Errorf("preflight of /range: %d %v", resp.StatusCode, resp.Header)
		}
		for path, want := range map[string]string{"/range/5BAA6": "*", "/range/XYZ": "*", "/api/v3/breaches": ""} {
			req, _ := http.NewRequest("GET", f.url+path, nil)
			req.Header.Set("User-Agent", "cors-test")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
				t.Errorf("GET %s (%d): Access-Control-Allow-Origin %q, want %q", path, resp.StatusCode, got, want)
			}
		}
	})
}

// TestPadding checks Add-Padding over many calls: 800 to 1000 lines, the
// real ones intact, padding lines of count 0 shaped like real ones and
// sorted in among them, sizes that vary, and padding drawn from the whole
// of its pool (8 sets of 1,000 lines a kind).
func TestPadding(t *testing.T) {
	forEachServer(t, func(t *testing.T, server string) {
		f := newFixtureOn(t, server, false, true)
		for _, tc := range []struct {
			mode string
			hash string
		}{{"", sha1Hex("password")}, {"?mode=ntlm", ntlmHex("password")}} {
			sizes := map[int]int{}
			padding := map[string]bool{}
			total := 0
			const calls = 300
			for range calls {
				r := f.get(t, "/range/"+tc.hash[:5]+tc.mode, "Add-Padding", "true")
				if r.code != 200 {
					t.Fatalf("padded range = %d", r.code)
				}
				lines := strings.Split(string(r.body), "\r\n")
				if len(lines) < 800 || len(lines) > 1000 {
					t.Fatalf("a padded answer has %d lines, want 800 to 1000", len(lines))
				}
				sizes[len(lines)]++
				total += len(lines)
				real, prev := 0, ""
				for _, l := range lines {
					suffix, count, ok := strings.Cut(l, ":")
					if !ok || len(suffix) != len(tc.hash)-5 || strings.ToUpper(suffix) != suffix {
						t.Fatalf("malformed line %q", l)
					}
					if _, err := hex.DecodeString("0" + suffix); err != nil {
						t.Fatalf("line %q is not hex", l)
					}
					if suffix < prev {
						t.Fatalf("lines out of order: %q after %q", suffix, prev)
					}
					prev = suffix
					if count == "0" {
						padding[suffix] = true
					} else {
						real++
						if suffix != tc.hash[5:] || count != "9545824" {
							t.Fatalf("unexpected real line %q", l)
						}
					}
				}
				if real != 1 {
					t.Fatalf("%d real lines in a padded answer, want 1", real)
				}
			}
			// 0-200 extra lines drawn uniformly: mean 900, and many sizes.
			if mean := float64(total) / calls; mean < 880 || mean > 920 {
				t.Errorf("mode %q: mean padded size %.1f lines, want about 900", tc.mode, mean)
			}
			if len(sizes) < 100 {
				t.Errorf("mode %q: only %d distinct sizes in %d answers: the size says too much", tc.mode, len(sizes), calls)
			}
			// An answer keeps about 90% of one set in 8: after 300, a
			// line never drawn is a broken draw (chance about 0.89^300).
			if len(padding) != 8000 {
				t.Errorf("mode %q: %d distinct padding lines in %d answers, want the pool's 8,000", tc.mode, len(padding), calls)
			}
		}
		// Unpadded answers are exact and stable.
		a, b := f.get(t, "/range/5BAA6"), f.get(t, "/range/5BAA6", "Add-Padding", "false")
		if !bytes.Equal(a.body, b.body) || strings.Contains(string(a.body), ":0") {
			t.Errorf("unpadded answers differ or hold padding: %q, %q", a.body, b.body)
		}
	})
}

// TestKeys checks identities and quotas: the hibp-api-key header is a
// breachd API key with the check scope; 401 without one, 403 without the
// scope, 429 with retry-after past the quota; the range API and the
// catalogue are open or keyed by configuration.
func TestKeys(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, server string) {
		account := "/api/v3/breachedaccount/" + both
		t.Run("open public", func(t *testing.T) {
			f := newFixtureOn(t, server, true, true)
			for _, tc := range []struct {
				path string
				hdr  []string
				code int
			}{
				{account, nil, 401},
				{account, []string{"hibp-api-key", "00000000000000000000000000000000"}, 401},
				{account, []string{"hibp-api-key", f.keys["admin"]}, 403},
				{account, []string{"hibp-api-key", f.keys["checker"]}, 200},
				{"/range/5BAA6", nil, 200},
				{"/api/v3/breaches", nil, 200},
				{"/api/v3/latestbreach", nil, 200},
				// A key the open routes cannot take (upstream's own, a key
				// without the scope) is ignored there, as upstream does.
				{"/range/5BAA6", []string{"hibp-api-key", "00000000000000000000000000000000"}, 200},
				{"/api/v3/breaches", []string{"hibp-api-key", "00000000000000000000000000000000"}, 200},
				{"/range/5BAA6", []string{"hibp-api-key", f.keys["admin"]}, 200},
			} {
				if r := f.get(t, tc.path, tc.hdr...); r.code != tc.code {
					t.Errorf("GET %s with %d headers = %d %s, want %d", tc.path, len(tc.hdr)/2, r.code, r.body, tc.code)
				}
			}
			r := f.get(t, account)
			golden(t, "breachedaccount-401", r.body)
			// The quota: one call, then 429 with retry-after in seconds.
			if r := f.get(t, account, "hibp-api-key", f.keys["slow"]); r.code != 200 {
				t.Fatalf("first call = %d", r.code)
			}
			r = f.get(t, account, "hibp-api-key", f.keys["slow"])
			if r.code != 429 {
				t.Fatalf("second call past the quota = %d, want 429", r.code)
			}
			secs, err := strconv.Atoi(r.h.Get("Retry-After"))
			if err != nil || secs < 1 || time.Duration(secs)*time.Second > 2*time.Minute {
				t.Errorf("Retry-After %q, want whole seconds (about 100)", r.h.Get("Retry-After"))
			}
			if !strings.Contains(string(r.body), `"statusCode":429`) || !strings.Contains(string(r.body), "Rate limit is exceeded") {
				t.Errorf("429 body %s", r.body)
			}
			if strings.Contains(f.logs.String(), f.keys["checker"]) || strings.Contains(f.logs.String(), f.keys["admin"]) {
				t.Error("an API key reached the logs")
			}
		})
		t.Run("keyed public", func(t *testing.T) {
			f := newFixtureOn(t, server, true, false)
			for _, path := range []string{"/range/5BAA6", "/api/v3/breaches", "/api/v3/breach/Adobe"} {
				if r := f.get(t, path); r.code != 401 {
					t.Errorf("GET %s without a key = %d, want 401", path, r.code)
				}
				if r := f.get(t, path, "hibp-api-key", f.keys["checker"]); r.code != 200 {
					t.Errorf("GET %s with a key = %d, want 200", path, r.code)
				}
			}
		})
	})
}
