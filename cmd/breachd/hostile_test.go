package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/client"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/synth"
)

// The tests of this file are clients that mean harm, against the real
// daemon over TLS (docs/SECURITY.md quotes each). Loopback is all of
// 127.0.0.0/8, so an attacker dials from 127.0.0.2 and an honest client from
// 127.0.0.1: two source addresses on one machine.

// metric scrapes the daemon's /metrics and returns the value of the first
// series of name with the labels (false if none).
func (s *secureDaemon) metric(t *testing.T, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	return metricAt(t, s.metrics, name, labels)
}

// metricAt scrapes the metrics listener at hostport (plain HTTP) and
// returns the value of the series of name with labels.
func metricAt(t *testing.T, hostport, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + hostport + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
series:
	for _, m := range families[name].GetMetric() {
		for k, v := range labels {
			if !hasLabel(m, k, v) {
				continue series
			}
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetHistogram() != nil: // its count
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// waitMetric polls the metric until ok says it is as wanted (an event the
// daemon causes), or fails after 20 s.
func (s *secureDaemon) waitMetric(t *testing.T, name string, labels map[string]string, ok func(float64) bool, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, _ := s.metric(t, name, labels)
		if ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v; want %s", name, labels, v, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestIdleConnections: connections that never send a byte, from one
// address, neither pile up nor keep an honest client out (finding 1).
func TestIdleConnections(t *testing.T) {
	t.Parallel()
	const perAddr = 50
	idle := 1000 // PROBE_IDLE_CONNS for the probe's scale (one process holds both ends: at most ~15,000 under 20,000 descriptors)
	if n, err := strconv.Atoi(os.Getenv("PROBE_IDLE_CONNS")); err == nil && n > 0 {
		idle = n
	}
	s := startSecure(t, "limits:\n  max_connections_per_address: 50\n  handshake_timeout: 300ms\nhttp:\n  addr: 127.0.0.1:0\n")
	conn := s.waitForKey(t, s.keys["checker"])
	for range idle {
		dialFrom(t, "127.0.0.2", s.addr)
	}
	// The honest client is answered meanwhile.
	start := time.Now()
	if err := calls["Check"](t, conn, s); err != nil {
		t.Fatalf("Check with %d idle connections open from another address: %v", idle, err)
	}
	t.Logf("Check answered in %v with %d idle connections from 127.0.0.2", time.Since(start), idle)
	grpcLn := map[string]string{"listener": "grpc"}
	if v, _ := s.metric(t, "breachd_connections_refused_total", map[string]string{"listener": "grpc", "cap": "per_address"}); v < float64(idle/2) {
		t.Errorf("%v idle connections refused over the per-address cap of %d; want most of %d", v, perAddr, idle)
	}
	// Those admitted are closed once the handshake timeout passes: only
	// the honest client's connection (and perhaps the scrape's) remain.
	s.waitMetric(t, "breachd_connections_open", grpcLn, func(v float64) bool { return v <= 2 }, "at most 2 once idle connections time out")

	// The HTTP face closes a connection that never handshakes as well.
	base := strings.TrimPrefix(s.http, "https://")
	c := dialFrom(t, "127.0.0.2", base)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the HTTP listener kept a silent connection open 5s with a handshake timeout of 300ms")
	}
}

// TestHealthWatches: Health.Watch needs no credential, so it is capped per
// address and in total (finding 2).
func TestHealthWatches(t *testing.T) {
	t.Parallel()
	s := startSecure(t, "quota:\n  max_health_watches: 5\n  max_health_watches_per_address: 3\n")
	watch := func(conn *grpc.ClientConn) (cancel func(), err error) {
		ctx, cancel := context.WithCancel(t.Context())
		st, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = st.Recv() // the first status, or the refusal
		}
		return cancel, err
	}
	local := s.dial(t, "", false)
	var first func()
	for i := range 3 {
		cancel, err := watch(local)
		if err != nil {
			t.Fatalf("watch %d from 127.0.0.1: %v", i+1, err)
		}
		defer cancel()
		if i == 0 {
			first = cancel
		}
	}
	if _, err := watch(local); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 4th watch from one address: %v, want RESOURCE_EXHAUSTED", err)
	}
	other := s.dialFrom(t, "127.0.0.2")
	for i := range 2 {
		cancel, err := watch(other)
		if err != nil {
			t.Fatalf("watch %d from 127.0.0.2: %v", i+1, err)
		}
		defer cancel()
	}
	if _, err := watch(other); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 6th watch in all: %v, want RESOURCE_EXHAUSTED", err)
	}
	if v, _ := s.metric(t, "breachd_health_watches", nil); v != 5 {
		t.Errorf("breachd_health_watches = %v, want 5", v)
	}
	first() // an ended watch frees its place
	s.waitMetric(t, "breachd_health_watches", nil, func(v float64) bool { return v == 4 }, "4 after one ended")
	cancel, err := watch(local)
	if err != nil {
		t.Fatalf("a watch after one ended: %v", err)
	}
	defer cancel()
}

// clientTLS trusts the test CA, for the server's "localhost" certificate.
func (s *secureDaemon) clientTLS(t *testing.T) *tls.Config {
	t.Helper()
	tc, err := client.TLSConfig(s.ca.File, "", "")
	if err != nil {
		t.Fatal(err)
	}
	tc.ServerName = "localhost"
	return tc
}

// dialFrom connects over TLS without a credential from a given loopback
// address.
func (s *secureDaemon) dialFrom(t *testing.T, from string) *grpc.ClientConn {
	t.Helper()
	tc := s.clientTLS(t)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := grpc.NewClient(s.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestRevokedStreamEnds: revoking a key ends its open streams within the
// key file's reload interval, while they send nothing (finding 3).
func TestRevokedStreamEnds(t *testing.T) {
	t.Parallel()
	s := startSecure(t, "") // keys_reload: 200ms
	key := s.createKey(t, "sweeper", "check,bulk")
	conn := s.waitForKey(t, key)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	st, err := breachdv1.NewExposureServiceClient(conn).CheckStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&breachdv1.CheckStreamRequest{EmailSha256: make([]byte, 64)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatalf("the stream's first answer: %v", err)
	}
	runOK(t, "keys", "revoke", "--data", s.data, "--name", "sweeper")
	start := time.Now()
	_, err = st.Recv()
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("an open stream after its key was revoked: %v; want UNAUTHENTICATED within 5s", err)
	}
	t.Logf("ended %v after the revocation: %v", time.Since(start), err)
}

// TestRefusalLogSampled: a flood of calls with a bad key writes a few log
// lines a second and a count, not a line each (finding 4).
func TestRefusalLogSampled(t *testing.T) {
	t.Parallel()
	s := startSecure(t, "")
	conn := s.dial(t, "not-a-key", false)
	const flood = 2000
	start := time.Now()
	for range flood {
		if err := calls["Check"](t, conn, s); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("Check with a bad key: %v", err)
		}
	}
	seconds := int(time.Since(start)/time.Second) + 2 // the seconds the flood touched
	s.stop(t)                                         // reports what was suppressed
	log := s.log.String()
	lines := strings.Count(log, `"msg":"call refused"`) + strings.Count(log, "msg=\"call refused\"")
	if lines == 0 || lines > 5*seconds {
		t.Errorf("%d refusals wrote %d log lines over %d seconds; want 1 to %d (5 a second)", flood, lines, seconds, 5*seconds)
	}
	if !strings.Contains(log, "repeated log lines suppressed") {
		t.Errorf("the suppressed refusals were never counted in the log:\n%s", log)
	}
	t.Logf("%d refusals, %d log lines, %d bytes of log", flood, lines, len(log))
}

// TestRangeAnonymousQuota: one address without a key cannot scrape the
// range API; a key holder is charged to its own quota (finding 5). On
// both HTTP servers, over TLS.
func TestRangeAnonymousQuota(t *testing.T) {
	t.Parallel()
	for _, server := range []string{"net/http", "fasthttp"} { // the HTTP face's servers (http.server)
		t.Run(server, func(t *testing.T) {
			testRangeAnonymousQuota(t, server)
		})
	}
}

func testRangeAnonymousQuota(t *testing.T, server string) {
	s := startSecure(t, "limits:\n  handshake_timeout: 300ms\nhttp:\n  addr: 127.0.0.1:0\n  server: "+server+"\nquota:\n  anonymous_rate: 1\n  anonymous_burst: 20\n")
	// A connection that never handshakes is closed at the handshake
	// timeout, as TestIdleConnections checks on the default server.
	c := dialFrom(t, "127.0.0.2", strings.TrimPrefix(s.http, "https://"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the HTTP listener kept a silent connection open 5s with a handshake timeout of 300ms")
	}
	tc := s.clientTLS(t)
	// A client that offers HTTP/2, as Kratos's does: the server must
	// settle on what it speaks (fasthttp: HTTP/1.1 only).
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}
	get := func(key string, i int) *http.Response {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/range/%05X", s.http, i), nil)
		req.Header.Set("User-Agent", "scraper")
		if key != "" {
			req.Header.Set("hibp-api-key", key)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	ok, refused := 0, 0
	var last *http.Response
	for i := range 40 {
		switch r := get("", i); r.StatusCode {
		case 200:
			ok++
		case 429:
			refused++
			last = r
		default:
			t.Fatalf("GET /range = %d", r.StatusCode)
		}
	}
	if ok < 20 || ok > 25 || refused == 0 {
		t.Fatalf("40 requests from one address with a burst of 20 at 1/s: %d answered, %d refused", ok, refused)
	}
	if last.Header.Get("Retry-After") == "" {
		t.Error("a 429 without Retry-After")
	}
	if r := get(s.keys["checker"], 41); r.StatusCode != 200 {
		t.Errorf("with a key, over the address's quota: %d, want 200 (charged to the key)", r.StatusCode)
	}
	// Every request is in the face's metrics, by route and code.
	for code, want := range map[string]int{"200": ok + 1, "429": refused} {
		if v, _ := s.metric(t, "breachd_http_request_duration_seconds", map[string]string{"route": "range", "code": code}); int(v) != want {
			t.Errorf("breachd_http_request_duration_seconds{route=range,code=%s} counts %v requests, want %d", code, v, want)
		}
	}
	// gRPC health calls from one address share a bucket too (charged as
	// each stream arrives: Guard.Tap).
	health := healthpb.NewHealthClient(s.dialFrom(t, "127.0.0.4"))
	answered := 0
	for range 40 {
		_, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		switch status.Code(err) {
		case codes.OK:
			answered++
		case codes.ResourceExhausted:
		default:
			t.Fatalf("health Check: %v", err)
		}
	}
	if answered < 20 || answered > 25 {
		t.Errorf("40 health Checks from one address with a burst of 20 at 1/s: %d answered", answered)
	}
	// HTTP refusals are counted with the gRPC ones.
	req, _ := http.NewRequest("GET", s.http+"/api/v3/breachedaccount/someone@example.com", nil)
	req.Header.Set("User-Agent", "scraper")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("breachedaccount without a key: %d, want 401", resp.StatusCode)
	}
	if v, _ := s.metric(t, "breachd_quota_refusals_total", map[string]string{"principal": "-"}); v < float64(refused) {
		t.Errorf("breachd_quota_refusals_total{principal=\"-\"} = %v after %d HTTP 429s", v, refused)
	}
	if v, _ := s.metric(t, "breachd_auth_failures_total", map[string]string{"reason": "unauthenticated", "principal": "-"}); v != 1 {
		t.Errorf("breachd_auth_failures_total{unauthenticated} = %v after one HTTP 401, want 1", v)
	}
}

// TestMetricsBeyondLoopback: metrics beyond loopback are refused without
// TLS and authentication, and served with them (finding 6).
func TestMetricsBeyondLoopback(t *testing.T) {
	t.Parallel()
	s := startSecure(t, "")
	args := []string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--metrics-addr", "0.0.0.0:0"}
	if err := run(t.Context(), args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "metrics_web_config") {
		t.Fatalf("metrics on 0.0.0.0 without a web configuration: %v", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("scrape-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := filepath.Join(s.dir, "web.yml")
	plain := "basic_auth_users:\n  prometheus: " + string(hash) + "\n"
	if err := os.WriteFile(web, []byte(plain), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(t.Context(), append(args, "--metrics-web-config", web), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "no tls_server_config") {
		t.Fatalf("metrics on 0.0.0.0 with basic auth but no TLS: %v", err)
	}
	full := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\n%s", s.cert, s.key, plain)
	if err := os.WriteFile(web, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, t.TempDir(), "--metrics-addr", "0.0.0.0:0", "--metrics-web-config", web)
	_, port, _ := net.SplitHostPort(d.metrics)
	tc := s.clientTLS(t)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	get := func(user, pass string) int {
		req, _ := http.NewRequest("GET", "https://127.0.0.1:"+port+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("", ""); code != http.StatusUnauthorized {
		t.Errorf("metrics without credentials: %d, want 401", code)
	}
	if code := get("prometheus", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("metrics with a wrong password: %d, want 401", code)
	}
	if code := get("prometheus", "scrape-secret"); code != http.StatusOK {
		t.Errorf("metrics with the scrape credentials: %d, want 200", code)
	}
}

// TestAdminOnlyOnSocket: a daemon without TLS authenticates no one, so it
// takes no admin call over TCP; its admin socket is its owner's alone
// (finding 7).
func TestAdminOnlyOnSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	sega := writeCorpus(t, dir, "SegaPass", synth.Options{Seed: 3, Records: 200})
	runOK(t, "import", "--data", data, "--manifest", sega.manifest, sega.dump)
	d := startDaemon(t, data)
	if d.admin != "unix://"+store.AdminSocket(data) {
		t.Fatalf("admin socket %q, want DATA/breachd.sock by default without TLS", d.admin)
	}
	err := run(t.Context(), []string{"breach", "delete", "--addr", d.addr, "SegaPass"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no admin calls over TCP") || !strings.Contains(err.Error(), d.admin) {
		t.Fatalf("breach delete over plaintext TCP: %v; want a refusal naming the admin socket", err)
	}
	wantAll(t, dial(t, d.addr), "after the refused delete", sega.accounts[:20], "SegaPass")
	fi, err := os.Stat(strings.TrimPrefix(d.admin, "unix://"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if out := runOK(t, "breach", "delete", "--addr", d.admin, "SegaPass"); !strings.Contains(out, "deleted SegaPass") {
		t.Fatalf("breach delete over the admin socket: %q", out)
	}

	// 0660 when asked; a file that is not a socket is never replaced.
	other := filepath.Join(dir, "other")
	g := startDaemon(t, other, "--admin-socket", filepath.Join(dir, "g.sock"), "--config", writeFile(t, dir, "g.yaml", "admin_socket_group: true\n"))
	if fi, err := os.Stat(strings.TrimPrefix(g.admin, "unix://")); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("admin socket with admin_socket_group: %v (%v), want 0660", fi.Mode().Perm(), err)
	}
	blocker := writeFile(t, dir, "notasocket", "x")
	err = run(t.Context(), []string{"serve", "--data", filepath.Join(dir, "third"), "--addr", "127.0.0.1:0", "--admin-socket", blocker}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("an admin socket path holding a file: %v", err)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestClientCertificateRequired: under client_auth: require, probes still
// work (/readyz, /healthz on the metrics listener), and a client without a
// certificate is told it needs one, not just "broken pipe".
func TestClientCertificateRequired(t *testing.T) {
	t.Parallel()
	s := startSecureAuth(t, "require", "")
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + s.metrics + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s under client_auth: require = %d, want 200", path, resp.StatusCode)
		}
	}
	_, err := client.New(s.dial(t, s.keys["checker"], false)).CheckDigest(t.Context(), breachd.Digest{})
	if err == nil || !strings.Contains(err.Error(), "client certificate") || !strings.Contains(err.Error(), "--cert") {
		t.Fatalf("a key without a certificate under client_auth: require: %v; want advice to pass --cert and --key", err)
	}
	if _, err := client.New(s.dial(t, "", true)).CheckDigest(t.Context(), breachd.Digest{}); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
}

// TestHTTPConnectionPlaces: on fasthttp (the default) the HTTP face's
// connections are the listener's own, so that large answers go out in one
// writev, and fasthttp reports each close to the connection caps. Clients
// that open a TLS connection, ask a range and hang up, many more than the
// per-address cap one after another, and connections the server ends
// itself (no handshake within the timeout) all give their places back.
func TestHTTPConnectionPlaces(t *testing.T) {
	t.Parallel()
	const perAddr = 3
	s := startSecure(t, fmt.Sprintf("limits:\n  max_connections_per_address: %d\n  handshake_timeout: 300ms\nhttp:\n  addr: 127.0.0.1:0\n", perAddr))
	base := strings.TrimPrefix(s.http, "https://")
	tc := s.clientTLS(t)
	// A client's close reaches the server a moment later: until the
	// server has seen it, the place is still taken and a new connection is
	// refused (a make test run under load saw that at the 4th). A place
	// that is never given back refuses every retry.
	get := func() (*http.Response, error) {
		c := tls.Client(dialFrom(t, "127.0.0.2", base), tc)
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /range/5BAA6 HTTP/1.1\r\nHost: breachd\r\nUser-Agent: places-test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	for i := range 5 * perAddr {
		resp, err := get()
		for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			resp, err = get()
		}
		if err != nil {
			t.Fatalf("connection %d from 127.0.0.2 (cap %d, the earlier ones closed), for 5 s: %v", i+1, perAddr, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("connection %d: /range = %d", i+1, resp.StatusCode)
		}
	}
	for range 2 * perAddr { // silent: the server closes each at the handshake timeout
		c := dialFrom(t, "127.0.0.2", base)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a silent connection was answered")
		}
	}
	s.waitMetric(t, "breachd_connections_open", map[string]string{"listener": "http"}, func(v float64) bool { return v == 0 },
		"0 once every client hung up or was hung up on")
}

// TestRangeBehindProxy: behind a reverse proxy named in
// http.trusted_proxies (a real one, Go's httputil.ReverseProxy, appending
// to X-Forwarded-For as nginx's $proxy_add_x_forwarded_for does), each
// client is charged its own anonymous quota, and what a client writes in
// X-Forwarded-For itself changes nothing; from an address that is not a
// trusted proxy, the header is not read at all. On both HTTP servers.
func TestRangeBehindProxy(t *testing.T) {
	t.Parallel()
	for _, server := range []string{"net/http", "fasthttp"} {
		t.Run(server, func(t *testing.T) { testRangeBehindProxy(t, server) })
	}
}

func testRangeBehindProxy(t *testing.T, server string) {
	const proxyAddr = "127.0.0.3"
	s := startSecure(t, "http:\n  addr: 127.0.0.1:0\n  server: "+server+"\n  trusted_proxies: ["+proxyAddr+"]\nquota:\n  anonymous_rate: 0.05\n  anonymous_burst: 10\n")
	target, err := url.Parse(s.http)
	if err != nil {
		t.Fatal(err)
	}
	from := func(addr string) *http.Transport {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: 5 * time.Second}
		return &http.Transport{DialContext: d.DialContext, TLSClientConfig: s.clientTLS(t)}
	}
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Header["X-Forwarded-For"] = r.In.Header["X-Forwarded-For"] // kept, then appended to
			r.SetXForwarded()
		},
		Transport: from(proxyAddr),
	})
	defer proxy.Close()
	get := func(base, client, xff string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/range/5BAA6", nil)
		req.Header.Set("User-Agent", "behind-a-proxy")
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := (&http.Client{Transport: from(client)}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// Client A spends its burst through the proxy, inventing an address
	// for each request.
	ok := 0
	for i := range 30 {
		switch code := get(proxy.URL, "127.0.0.5", fmt.Sprintf("198.51.100.%d", i)); code {
		case 200:
			ok++
		case 429:
		default:
			t.Fatalf("GET through the proxy = %d", code)
		}
	}
	if ok < 10 || ok > 12 { // a token every 20 s: slow machines included
		t.Fatalf("client A through the proxy: %d of 30 answered with a burst of 10 at 0.05/s; want its own quota, whatever it claims", ok)
	}
	// Client B, through the same proxy, has its own.
	if code := get(proxy.URL, "127.0.0.6", ""); code != 200 {
		t.Fatalf("client B through the proxy = %d, want 200: charged to client A's or the proxy's quota", code)
	}
	// Straight from an address that is no proxy, the header is not read.
	ok = 0
	for i := range 30 {
		if get(s.http, "127.0.0.7", fmt.Sprintf("198.51.100.%d", i)) == 200 {
			ok++
		}
	}
	if ok > 12 {
		t.Fatalf("straight from 127.0.0.7 with invented X-Forwarded-For: %d of 30 answered; want the header ignored", ok)
	}
}
