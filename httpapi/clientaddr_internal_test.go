package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

// TestClientAddr: who a request is charged to, for each shape of
// X-Forwarded-For a chain of proxies (or a client) writes.
func TestClientAddr(t *testing.T) {
	t.Parallel()
	a := &API{opts: Options{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"),
	}}}
	for _, tc := range []struct {
		name, peer string
		xff        []string // header lines
		want       string
	}{
		{"no proxy", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"no proxy, header ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"one proxy", "10.0.0.2:4000", []string{"203.0.113.5"}, "203.0.113.5"},
		{"one proxy, the client's own claim before", "10.0.0.2:4000", []string{"198.51.100.1, 203.0.113.5"}, "203.0.113.5"},
		{"two proxies", "10.0.0.2:4000", []string{"203.0.113.5, 10.0.0.9"}, "203.0.113.5"},
		{"two header lines", "10.0.0.2:4000", []string{"198.51.100.1", "203.0.113.5, 10.0.0.9"}, "203.0.113.5"},
		{"a proxy that appends ports", "10.0.0.2:4000", []string{"203.0.113.5:51234"}, "203.0.113.5"},
		{"IPv6", "[fd00::2]:4000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"IPv4 mapped peer", "[::ffff:10.0.0.2]:4000", []string{"203.0.113.5"}, "203.0.113.5"},
		{"proxy without the header", "10.0.0.2:4000", nil, "10.0.0.2"},
		{"every hop a proxy", "10.0.0.2:4000", []string{"10.1.1.1, 10.0.0.9"}, "10.1.1.1"},
		{"garbage right of a hop: not ours", "10.0.0.2:4000", []string{"203.0.113.5, unknown"}, "10.0.0.2"},
		{"garbage left of the client", "10.0.0.2:4000", []string{"<script>, 203.0.113.5"}, "203.0.113.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/range/5BAA6", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := a.clientAddr(stdRequest{r}); got.Addr().String() != tc.want {
				t.Fatalf("clientAddr = %s, want %s", got.Addr(), tc.want)
			}
		})
	}
}
