package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/connlimit"
	"github.com/breachd/breachd/quota"
	"github.com/breachd/breachd/service"
)

// Options configure the HTTP face.
type Options struct {
	Logger *slog.Logger
	// Authn identifies callers; nil serves everyone unauthenticated (a
	// daemon on loopback without TLS, as the gRPC face).
	Authn *auth.Authenticator
	// Quota charges each authenticated call one token (required with Authn).
	Quota *quota.Limiter
	// OpenPublic serves what upstream serves without a key (the range API
	// and the breach catalogue) to anyone; false requires a key with the
	// check scope there too. breachedaccount always requires one.
	OpenPublic bool
	// Registerer receives the request metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Anonymous, if not nil, charges each request answered without a
	// credential (the open routes) to its source address
	// (connlimit.Source): one address cannot scrape the range API.
	Anonymous *quota.Limiter
	// Refusals counts refused requests (shared with the gRPC guard);
	// nil counts nothing.
	Refusals *auth.Refusals
	// TrustedProxies are the reverse proxies in front of the face (an
	// ingress, a load balancer): a request from one of them is charged
	// (Anonymous) and logged as from the address its X-Forwarded-For
	// names (clientAddr). Without them every client behind a proxy
	// would share the proxy's quota.
	TrustedProxies []netip.Prefix
}

// API is the HTTP face over a *service.Service.
type API struct {
	svc  *service.Service
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux

	requests  *prometheus.HistogramVec // by route and code
	rangeRule auth.Rule                // who may ask /range, for Fast
}

// New returns the HTTP face over svc.
func New(svc *service.Service, o Options) (*API, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Authn != nil && o.Quota == nil {
		return nil, &breachd.OptionError{Option: "Quota", Value: nil, Want: "a limiter when callers are authenticated"}
	}
	a := &API{svc: svc, opts: o, log: o.Logger, mux: http.NewServeMux()}
	a.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "breachd_http_request_duration_seconds",
		Help:    "HTTP requests by route and status code, and how long they took.",
		Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1},
	}, []string{"route", "code"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(a.requests); err != nil {
			return nil, err
		}
	}
	// Each route's use case; who may call it at what cost is auth.Policy's.
	for _, r := range []struct {
		pattern, name string
		uc            auth.UseCase
		h             handler
	}{
		{"GET /range/{prefix}", "range", auth.UsePasswordRange, a.rangeHandler},
		{"GET /api/v3/breachedaccount/{account}", "breachedaccount", auth.UseCheck, a.breachedAccount},
		{"GET /api/v3/breaches", "breaches", auth.UseCatalogue, a.breaches},
		{"GET /api/v3/breach/{name}", "breach", auth.UseCatalogue, a.breach},
		{"GET /api/v3/dataclasses", "dataclasses", auth.UseCatalogue, a.dataClasses},
		{"GET /api/v3/latestbreach", "latestbreach", auth.UseCatalogue, a.latestBreach},
		{"POST /v1/assess", "assess", auth.UseAssess, a.assess},
		{"GET /v1/private/info", "private-info", auth.UseCheckPrivate, a.privateInfo},
		{"POST /v1/private/check", "private-check", auth.UseCheckPrivate, a.privateCheck},
		{"POST /v1/hooks/kratos", "kratos", auth.UseAssess, a.kratosHook},
	} {
		rule, err := auth.RuleFor(r.uc, r.name)
		if err != nil {
			return nil, err
		}
		h := a.guard(r.name, rule, r.h)
		if r.name == "range" {
			h = cors(h)
			a.rangeRule = rule
		}
		a.mux.Handle(r.pattern, h)
	}
	// Browsers call the range API from other origins (upstream allows
	// any): the preflight needs no credential.
	a.mux.Handle("OPTIONS /range/{prefix}", cors(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Access-Control-Allow-Methods", "GET, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Add-Padding, hibp-api-key")
		w.Header().Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
	})))
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{StatusCode: 404, Message: "no such API: see the Have I Been Pwned API v3 documentation for the routes breachd answers"})
	})
	return a, nil
}

// cors lets pages of any origin read h's answers, refusals included, as
// upstream's range API does.
func cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// handler answers one route; it returns the status it wrote.
type handler func(w http.ResponseWriter, r *http.Request) int

// guard checks the user agent, identifies the caller and charges its quota
// where the route needs it, then runs h and records the request. It never
// logs a request's path or query: they carry the account asked about.
func (a *API) guard(route string, rule auth.Rule, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var code int
		if p, err := a.admit(stdRequest{r}, route, rule); err != nil {
			code = writeError(w, a.log, route, err)
		} else {
			if p != nil {
				r = r.WithContext(auth.NewContext(r.Context(), p))
			}
			code = h(w, r)
		}
		a.observe(route, code, start)
	})
}

// observe records a request of route answered with code.
func (a *API) observe(route string, code int, start time.Time) {
	a.requests.WithLabelValues(route, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
}

// request is what the guard reads of a request, whichever server carries
// it: net/http's (stdRequest) or fasthttp's (fastRequest).
type request interface {
	userAgent() string
	header(name string) string
	headerValues(name string) []string // every line of a header
	remoteAddr() string                // host:port
	tlsState() *tls.ConnectionState
}

type stdRequest struct{ r *http.Request }

func (q stdRequest) userAgent() string                 { return q.r.UserAgent() }
func (q stdRequest) header(name string) string         { return q.r.Header.Get(name) }
func (q stdRequest) headerValues(name string) []string { return q.r.Header.Values(name) }
func (q stdRequest) remoteAddr() string                { return q.r.RemoteAddr }
func (q stdRequest) tlsState() *tls.ConnectionState    { return q.r.TLS }

// errNoUserAgent refuses a request without a User-Agent, as upstream: every
// caller must say who it is.
var errNoUserAgent = breachd.Errorf(breachd.ErrPermissionDenied, "A user agent is required: send a User-Agent header naming your application.")

// admit returns the caller's principal (nil when it needs none) when the
// request may go on, or why it is refused.
func (a *API) admit(q request, route string, rule auth.Rule) (*auth.Principal, error) {
	if q.userAgent() == "" {
		return nil, errNoUserAgent
	}
	if a.opts.Authn == nil {
		return nil, nil
	}
	open := rule.Anonymous(a.opts.OpenPublic)
	if open && !a.credentialed(q) {
		return nil, a.anonymous(q)
	}
	p, err := a.identify(q)
	if err == nil {
		err = rule.Admit(p, route)
	}
	if err != nil && open {
		// Upstream ignores a key on the routes it serves to anyone: a
		// client configured with its Have I Been Pwned key (or a breachd
		// key without the scope) sends it to the range API too, and is
		// served as anyone is, charged to its address.
		return nil, a.anonymous(q)
	}
	if err != nil {
		principal, reason := "-", "unauthenticated"
		if p != nil {
			principal, reason = p.Name, "permission_denied"
		}
		a.refused(func(rf *auth.Refusals) { rf.Unauthorized(reason, principal) })
		a.log.Warn("request refused", "route", route, "principal", principal, "peer", a.clientAddr(q).String(), "err", err)
		return nil, err
	}
	if rule.Cost == auth.PerCall {
		if err := a.opts.Quota.Take(p.Name, quota.Limits{Rate: p.Rate, Burst: p.Burst}, 1); err != nil {
			a.refused(func(rf *auth.Refusals) { rf.OverQuota(p.Name) })
			return nil, err
		}
	}
	return p, nil
}

// anonymous charges a request answered without a credential to its
// source address (Options.Anonymous).
func (a *API) anonymous(q request) error {
	if a.opts.Anonymous == nil {
		return nil
	}
	if err := a.opts.Anonymous.Take(source(a.clientAddr(q)), quota.Limits{}, 1); err != nil {
		a.refused(func(rf *auth.Refusals) { rf.OverQuota("-") })
		return err
	}
	return nil
}

// refused counts a refusal, if the face counts them.
func (a *API) refused(count func(*auth.Refusals)) {
	if a.opts.Refusals != nil {
		count(a.opts.Refusals)
	}
}

// credentialed reports whether the request shows a credential: on an open
// route it is then charged to its principal rather than its address.
func (a *API) credentialed(q request) bool {
	return q.header("hibp-api-key") != "" || clientCert(q.tlsState()) != nil
}

// source names the source of a request from addr, the key of its
// anonymous quota (connlimit.Source: an IPv6 /64).
func source(addr netip.AddrPort) string {
	if src, ok := connlimit.Source(net.TCPAddrFromAddrPort(addr)); ok {
		return src.String()
	}
	return addr.String()
}

// clientAddr returns the address a request comes from: its peer's; or,
// when the peer is a trusted proxy, the nearest address in its
// X-Forwarded-For that is not one (each proxy appends the address it took
// the request from, so the entries left of the last untrusted one are the
// client's to invent). The port is the peer's.
func (a *API) clientAddr(q request) netip.AddrPort {
	peer, err := netip.ParseAddrPort(q.remoteAddr())
	if err != nil || !trusted(a.opts.TrustedProxies, peer.Addr()) {
		return peer
	}
	client := peer.Addr().Unmap()
	values := q.headerValues("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		hops := strings.Split(values[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			hop, ok := forwardedAddr(hops[j])
			if !ok {
				return netip.AddrPortFrom(client, peer.Port()) // no proxy of ours wrote it
			}
			client = hop
			if !trusted(a.opts.TrustedProxies, hop) {
				return netip.AddrPortFrom(client, peer.Port())
			}
		}
	}
	return netip.AddrPortFrom(client, peer.Port())
}

// forwardedAddr reads an X-Forwarded-For entry: an address, or one with a
// port (some proxies append it).
func forwardedAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

func trusted(proxies []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// identify finds the caller: a breachd API key in hibp-api-key (where
// upstream clients put theirs), else a verified client certificate.
func (a *API) identify(q request) (*auth.Principal, error) {
	if key := q.header("hibp-api-key"); key != "" {
		p, err := a.opts.Authn.FromKey(key)
		if errors.Is(err, breachd.ErrUnauthenticated) { // worded for this header, not gRPC's
			err = breachd.Errorf(breachd.ErrUnauthenticated, "Access denied: the hibp-api-key is not a valid breachd API key (revoked, or never created); send a key from 'breachd keys create'")
		}
		return p, err
	}
	if cert := clientCert(q.tlsState()); cert != nil {
		return a.opts.Authn.FromCert(cert)
	}
	return nil, breachd.Errorf(breachd.ErrUnauthenticated,
		"Access denied due to missing hibp-api-key: send a key from 'breachd keys create' in the hibp-api-key header, or a client certificate")
}

func clientCert(cs *tls.ConnectionState) *x509.Certificate {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	return cs.VerifiedChains[0][0]
}
