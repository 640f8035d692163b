package httpapi_test

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzFaces: any GET the HTTP face may meet is answered alike by its two
// servers, net/http's (ServeHTTP) and fasthttp's (Fast, which answers
// /range with code of its own, its own reading of the path, the query and
// the Add-Padding header, and every other route through fasthttpadaptor):
// the same status and body, or for a padded /range answer (random) the
// same real lines, every line a suffix and a count. The handlers are
// called in process, on one corpus.
func FuzzFaces(f *testing.F) {
	api, _ := newAPI(f, false, false)
	fast := api.Fast()
	routes := []string{"/range/", "/api/v3/breachedaccount/", "/api/v3/breach/", "/api/v3/breaches"}
	f.Add(0, "5BAA6", "", "")
	f.Add(0, "5baa6", "mode=ntlm", "true")
	f.Add(0, "8846F", "mode=NTLM&mode=sha1", "TRUE")
	f.Add(0, "5BAA61", "", "false")
	f.Add(0, "", "mode=", "")
	f.Add(0, "5BAA6", "mode=ntlm;x", "")
	f.Add(0, "5BAA6", "mode=%6etlm", "")
	f.Add(0, "5BAA6", "mode=md5", "true ")
	f.Add(0, "zzzzz", "x=1&mode=ntlm", "")
	f.Add(1, both, "truncateResponse=false&domain=adobe.com", "")
	f.Add(1, adobeOnly, "includeUnverified=false;x", "")
	f.Add(1, "both%40example.com", "", "")
	f.Add(0, "%35BAA6", "", "")
	f.Add(2, "Adobe", "", "")
	f.Add(3, "", "domain=adobe.com&IsSpamList=false", "")
	f.Fuzz(func(t *testing.T, route int, prefix, query, padding string) {
		// A segment that makes a server rewrite or cut the path ('/', '.',
		// '..', '?', '#', '\\'), and bytes no request line or header
		// carries, are each server's own affair. Escapes are not: both
		// decode them.
		if strings.ContainsAny(prefix, "/?#\\") || prefix == "." || prefix == ".." || !printable(prefix) || !printable(query) || strings.Contains(query, "#") || !printable(padding) {
			return
		}
		uri := routes[uint(route)%uint(len(routes))]
		if strings.HasSuffix(uri, "/") {
			uri += prefix
		}
		rangeRoute := strings.HasPrefix(uri, "/range/")
		if query != "" {
			uri += "?" + query
		}
		req, err := http.NewRequest(http.MethodGet, "http://breachd.test"+uri, nil)
		if err != nil {
			return
		}
		req.Header.Set("User-Agent", "breachd-fuzz")
		if padding != "" {
			req.Header.Set("Add-Padding", padding)
		}
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		stdCode, stdBody := rec.Code, rec.Body.Bytes()

		var fr fasthttp.Request
		fr.SetRequestURI(uri)
		fr.Header.SetMethod(fasthttp.MethodGet)
		fr.Header.Set("User-Agent", "breachd-fuzz")
		if padding != "" {
			fr.Header.Set("Add-Padding", padding)
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&fr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
		fast(&ctx)
		fastCode, fastBody := ctx.Response.StatusCode(), ctx.Response.Body()

		if stdCode != fastCode {
			t.Fatalf("GET %s (Add-Padding %q): net/http %d %q, fasthttp %d %q", uri, padding, stdCode, stdBody, fastCode, fastBody)
		}
		if stdCode != http.StatusOK || !rangeRoute {
			if !bytes.Equal(bytes.TrimSpace(stdBody), bytes.TrimSpace(fastBody)) {
				t.Fatalf("GET %s: %d, net/http says %q, fasthttp %q", uri, stdCode, stdBody, fastBody)
			}
			return
		}
		stdReal, stdPad := rangeLines(t, stdBody)
		fastReal, fastPad := rangeLines(t, fastBody)
		if !slices.Equal(stdReal, fastReal) || (stdPad == 0) != (fastPad == 0) {
			t.Fatalf("GET %s (Add-Padding %q): net/http %d lines and %d padding, fasthttp %d and %d, or other lines",
				uri, padding, len(stdReal), stdPad, len(fastReal), fastPad)
		}
	})
}

// rangeLine is one line of a /range answer: an upper-case SHA-1 (35) or
// NTLM (27) suffix and a count.
var rangeLine = regexp.MustCompile(`^([0-9A-F]{35}|[0-9A-F]{27}):[0-9]+$`)

// rangeLines returns an answer's lines with a count, and how many lines
// are padding (a count of 0).
func rangeLines(t *testing.T, body []byte) (real []string, padding int) {
	t.Helper()
	if len(body) == 0 {
		return nil, 0
	}
	for _, l := range strings.Split(string(body), "\r\n") {
		if !rangeLine.MatchString(l) {
			t.Fatalf("a line of a /range answer is %q", l)
		}
		if strings.HasSuffix(l, ":0") {
			padding++
		} else {
			real = append(real, l)
		}
	}
	return real, padding
}

// printable reports whether s is printable ASCII without spaces.
func printable(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
