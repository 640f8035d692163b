package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/certs"
	"github.com/breachd/breachd/httpapi"
	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/policy"
	"github.com/breachd/breachd/quota"
	"github.com/breachd/breachd/server"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/webhook"
)

// Config is what a daemon serves and how. The zero value is not usable:
// start from DefaultConfig.
type Config struct {
	Data  string // the data directory (store.EmailDir, store.PasswordDir, keys.json)
	Addr  string // gRPC listen address; beyond loopback it needs TLS
	Admin bool   // serve the AdminService (over TCP only with TLS)
	// AdminSocket is a unix socket serving every service, admin included,
	// to whoever may open it (0600, or 0660 with AdminSocketGroup): a
	// daemon without TLS takes admin calls only there. "" for none.
	AdminSocket      string
	AdminSocketGroup bool
	MetricsAddr      string // Prometheus /metrics listen address; "" for none
	// MetricsWebConfig is an exporter-toolkit web configuration file (TLS,
	// basic auth) for the metrics listener: required beyond loopback.
	MetricsWebConfig string
	HTTPAddr         string // the HTTP face (Have I Been Pwned's API); "" for none
	// HTTPServer is the HTTP face's server: HTTPServerFast (fasthttp,
	// the default, which answers /range itself and every other route
	// through net/http's handlers) or HTTPServerStd (Go's net/http,
	// which also speaks HTTP/2 over TLS).
	HTTPServer string
	// OpenPublic serves the range API and the catalogue over HTTP without
	// a key, as upstream does.
	OpenPublic bool
	// TrustedProxies are the reverse proxies in front of the HTTP face
	// whose X-Forwarded-For names the client (httpapi.Options).
	TrustedProxies  []netip.Prefix
	ShutdownTimeout time.Duration // how long calls in flight may take at shutdown

	Emails    store.Options // the email corpus (Logger and Registerer are the daemon's)
	Passwords store.Options // each password corpus
	Limits    server.TransportLimits
	Network   Network
	// ImportIdleTimeout ends an import stream silent this long.
	ImportIdleTimeout time.Duration

	TLS         *TLS // nil: plaintext, loopback only, no authentication
	Auth        Auth
	Quota       Quota
	Replication Replication
	Policy      Policy
	Watch       Watch
}

// Watch is where a writer delivers exposure events of its watchlists.
type Watch struct {
	Webhooks []webhook.Endpoint
	// RetryFor is how long an event is retried at an endpoint before it is
	// dead-lettered (0: webhook's default).
	RetryFor time.Duration
	// Retention is how long events are kept once every endpoint has had
	// them (0: 30 days).
	Retention time.Duration
}

// pairsCorpus names the pair corpus in replication's buckets.
const pairsCorpus = "pairs"

// Policy is how assessments are decided: Default for every principal
// not in ByPrincipal (package policy).
type Policy struct {
	Default     policy.Policy
	ByPrincipal map[string]policy.Policy
}

// TLS is the daemon's certificate and, for mutual TLS, its client CA.
type TLS struct {
	Cert, Key, ClientCA string
	ClientAuth          certs.ClientAuth
}

// Auth says who may call: with TLS, API keys from the data directory's
// key file and client certificates mapped to principals.
type Auth struct {
	APIKeys    bool
	KeysReload time.Duration // how often the key file is re-read
	Reflection bool          // server reflection for authenticated callers
	Identities []auth.CertIdentity
}

// Quota is every principal's default token bucket and stream cap, and
// (with TLS) the buckets of callers without a credential.
type Quota struct {
	Default       quota.Limits
	MaxStreams    int
	MaxStreamWait time.Duration
	// Anonymous is each source address's bucket for what needs no
	// credential: health, and the open HTTP routes (the range API, the
	// catalogue). MaxWatches caps the Health.Watch streams open at once,
	// MaxWatchesPerAddress those of one address.
	Anonymous                        quota.Limits
	MaxWatches, MaxWatchesPerAddress int
}

// Replication makes the daemon a writer publishing to NATS, or a replica
// following one.
type Replication struct {
	Publish, Follow string
	Advertise       string // the writer's address as replicas quote it (default: the gRPC address)
	NATS            natsrepl.Options
}

// DefaultConfig returns the configuration of a daemon on loopback.
func DefaultConfig() Config {
	c := Config{
		Addr: "127.0.0.1:7355", Admin: true, OpenPublic: true, HTTPServer: HTTPServerFast, ShutdownTimeout: 10 * time.Second,
		Emails: store.DefaultOptions(), Passwords: store.DefaultOptions(), Limits: server.DefaultTransportLimits(), Network: DefaultNetwork(),
		ImportIdleTimeout: server.DefaultImportIdleTimeout,
		Auth:              Auth{APIKeys: true, KeysReload: 2 * time.Second, Reflection: true},
		Quota: Quota{Default: quota.Limits{Rate: 1000, Burst: 20_000}, MaxStreams: 8, MaxStreamWait: 5 * time.Second,
			Anonymous: quota.Limits{Rate: 100, Burst: 500}, MaxWatches: 1000, MaxWatchesPerAddress: 16},
	}
	// The password corpora take far fewer writes and lookups than the
	// email corpus: a smaller memtable. No block cache, as for emails:
	// /range and counts read the lookup index, and Badger's cache charges
	// an uncompressed block read through mmap as the rest of its table
	// (dgraph-io/badger#2021), so 64 MiB held a handful of blocks and
	// logged "Block cache might be too small" every minute.
	c.Passwords.MemTableSize = 16 << 20
	return c
}

// Daemon is a running breachd: its listeners, corpora and replication.
type Daemon struct {
	cfg    Config
	log    *slog.Logger
	gs     *grpc.Server
	svcs   *server.Services
	svc    *service.Service
	lis    net.Listener
	http   *http.Server     // the HTTP face on net/http
	fast   *fasthttp.Server // or on fasthttp
	httpLn net.Listener
	mets   *http.Server
	metsLn net.Listener
	guard  *server.Guard // nil without TLS
	// The admin socket's server (adminsocket.go), if any.
	adminGS   *grpc.Server
	adminLn   net.Listener
	adminSvcs *server.Services
	// logs samples the daemon's warnings (logsample.go).
	logs        *sampler
	connRefused *prometheus.CounterVec
	failed      chan error // a listener that stopped by itself, a lost writer lease, a replica to resync
	reg         *prometheus.Registry

	emails    *store.Store
	passwords map[breachd.HashKind]*store.Passwords
	pairs     *store.Store
	watch     *store.Watchlists // a writer's
	tlsFiles  *certs.Reloader
	keys      *auth.Keyring
	authn     *auth.Authenticator // nil without TLS

	// closers run after the background work stops.
	closers []func()
	// onCommit are called after each change of the email corpus commits
	// (the publisher's kick, the watchlists' reconciliation).
	onCommit []func()
	// writer names the writer's address on a replica, as it published it.
	writer func() string
	// followers are a replica's, one a corpus; healthMu orders the health
	// changes they cause.
	followers []*natsrepl.Follower
	followed  []string // what each follower follows, for Ready
	healthMu  sync.Mutex
	opened    atomic.Bool // the service answers from the email corpus

	// bgCtx is the daemon's lifetime: the background work (key reloads,
	// the TLS watch, replication) runs on it; stop cancels it and waits.
	bgCtx  context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup
	once   sync.Once
}

// loopback reports whether a listen address keeps to this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Start assembles and starts a daemon: it listens at once (health says
// NOT_SERVING), opens the corpora (a large one may rebuild its filter for
// minutes), wires replication, and returns serving (a replica: once it
// holds a whole corpus version). log receives the daemon's own events.
func Start(ctx context.Context, c Config, log *slog.Logger) (*Daemon, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := c.Network.Validate(); err != nil {
		return nil, err
	}
	sh := newSampled(log.Handler(), sampleBurst)
	log = slog.New(sh)
	if c.TLS == nil && !loopback(c.Addr) {
		return nil, fmt.Errorf("refusing to listen on %s without TLS and authentication: set tls.cert and tls.key (--tls-cert, --tls-key), "+
			"then create API keys ('breachd keys create') or map client certificates (auth.mtls_identities); or listen on 127.0.0.1", c.Addr)
	}
	if len(c.TrustedProxies) > 0 && c.TLS == nil {
		// Without TLS the face authenticates no one (loopback only): a
		// proxy in front would serve breachedaccount, which needs a key,
		// to whomever it serves.
		return nil, fmt.Errorf("http.trusted_proxies is set, but without TLS the HTTP face authenticates no caller, and a proxy in front would open every route (breachedaccount included) to whomever it serves: set tls.cert and tls.key, and let the proxy connect over TLS")
	}
	if len(c.Auth.Identities) > 0 && (c.TLS == nil || c.TLS.ClientCA == "") {
		// Without a client CA no certificate is asked for: the identities
		// would map no caller, and their callers be refused as anonymous.
		return nil, fmt.Errorf("auth.mtls_identities maps client certificates, but none is asked for without tls.client_ca (--client-ca): set the CA that issues them")
	}
	if c.HTTPServer != "" && c.HTTPServer != HTTPServerStd && c.HTTPServer != HTTPServerFast {
		return nil, fmt.Errorf("http.server = %q: want %s or %s", c.HTTPServer, HTTPServerStd, HTTPServerFast)
	}
	if c.MetricsAddr != "" && !loopback(c.MetricsAddr) {
		if err := checkWebConfig(c.MetricsWebConfig); err != nil {
			return nil, fmt.Errorf("refusing to serve metrics on %s: %w", c.MetricsAddr, err)
		}
	}
	if c.HTTPAddr != "" && c.TLS == nil && !loopback(c.HTTPAddr) {
		return nil, fmt.Errorf("refusing to serve HTTP on %s without TLS and authentication: set tls.cert and tls.key, or listen on 127.0.0.1", c.HTTPAddr)
	}
	bgCtx, cancel := context.WithCancel(context.Background())
	d := &Daemon{cfg: c, log: log, logs: sh.s, failed: make(chan error, 3), bgCtx: bgCtx, cancel: cancel, passwords: map[breachd.HashKind]*store.Passwords{}}
	if err := d.start(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// start assembles the daemon Start describes; on error the caller closes
// what it started.
func (d *Daemon) start(ctx context.Context) (err error) {
	c, log := d.cfg, d.log
	d.reg = prometheus.NewRegistry()
	reg := d.reg
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.connRefused = newConnRefused(reg)
	d.background(func(ctx context.Context) {
		t := time.NewTicker(sampleReport)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				d.logs.report(context.Background(), sampleReport)
				return
			case <-t.C:
				d.logs.report(ctx, sampleReport)
			}
		}
	})

	// The chain, in a fixed order: recovery, logging, metrics, then
	// authentication and quotas (with TLS only), then the handlers, which
	// validate their requests.
	unary, stream := server.Interceptors(log)
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	reg.MustRegister(grpcMetrics)
	unary = append(unary, grpcMetrics.UnaryServerInterceptor())
	stream = append(stream, grpcMetrics.StreamServerInterceptor())
	baseUnary, baseStream := slices.Clip(unary), slices.Clip(stream) // the admin socket's chain
	opts := append(c.Limits.ServerOptions(), grpc.ConnectionTimeout(c.Network.HandshakeTimeout))
	var httpTLS *tls.Config
	var authn *auth.Authenticator // d.authn once built
	var limiter, anonymous *quota.Limiter
	var refusals *auth.Refusals
	if c.TLS != nil {
		if d.tlsFiles, err = certs.Load(certs.Files{Cert: c.TLS.Cert, Key: c.TLS.Key, ClientCA: c.TLS.ClientCA, Auth: c.TLS.ClientAuth}, log); err != nil {
			return err
		}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "breachd_tls_certificate_expiry_timestamp_seconds",
			Help: "When the TLS certificate in use expires (Unix time): alert well before it. A reload that finds an unusable certificate keeps this one.",
		}, func() float64 { return float64(d.tlsFiles.NotAfter().Unix()) }))
		d.background(func(ctx context.Context) {
			if err := d.tlsFiles.Watch(ctx); err != nil {
				log.Error("watching TLS files failed; reload them with SIGHUP", "err", err)
			}
		})
		opts = append(opts, grpc.Creds(credentials.NewTLS(d.tlsFiles.ServerConfig())))
		httpTLS = d.tlsFiles.HTTPServerConfig()
		if c.HTTPServer == HTTPServerFast {
			httpTLS = d.tlsFiles.HTTP1ServerConfig()
		}
		if c.Auth.APIKeys {
			if d.keys, err = auth.OpenKeyring(c.Data, log); err != nil {
				return err
			}
			d.background(func(ctx context.Context) { d.keys.Watch(ctx, c.Auth.KeysReload) })
		}
		if authn, err = auth.NewAuthenticator(d.keys, c.Auth.Identities); err != nil {
			return err
		}
		d.authn = authn
		if limiter, err = quota.New(c.Quota.Default, c.Quota.MaxStreams); err != nil {
			return err
		}
		if anonymous, err = quota.New(c.Quota.Anonymous, max(1, c.Quota.MaxWatchesPerAddress), quota.Naming("address")); err != nil {
			return err
		}
		if refusals, err = auth.NewRefusals(reg); err != nil {
			return err
		}
		d.guard, err = server.NewGuard(authn, limiter, server.GuardOptions{Logger: log, Registerer: reg, Refusals: refusals,
			Reflection: c.Auth.Reflection, MaxStreamWait: c.Quota.MaxStreamWait,
			Anonymous: anonymous, MaxWatches: c.Quota.MaxWatches})
		if err != nil {
			return err
		}
		if d.keys != nil {
			d.keys.OnReload(d.guard.Revalidate) // a revoked key's open streams end
		}
		opts = append(opts, grpc.InTapHandle(d.guard.Tap))
		gu, gst := d.guard.Interceptors()
		unary, stream = append(unary, gu...), append(stream, gst...)
		if (d.keys == nil || d.keys.Len() == 0) && len(c.Auth.Identities) == 0 {
			log.Warn("no API keys and no mTLS identities: every call will be refused until you run 'breachd keys create'")
		}
	}
	if c.TLS == nil && c.Admin {
		ru, rs := refuseAdmin(c.AdminSocket)
		unary, stream = append(unary, ru), append(stream, rs)
	}
	opts = append(opts, grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))
	d.gs = grpc.NewServer(opts...)
	var svcOpts []service.Option
	for _, k := range breachd.HashKinds {
		svcOpts = append(svcOpts, service.WithPasswords(k, nil)) // opening
	}
	svcOpts = append(svcOpts, service.WithPairs(nil)) // opening
	if c.Replication.Follow != "" {
		svcOpts = append(svcOpts, service.WithReadOnly(d.replicaRefusal))
	}
	ps, err := policy.New(c.Policy.Default, c.Policy.ByPrincipal, policy.Options{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	d.warnPolicyPrincipals()
	svcOpts = append(svcOpts, service.WithPolicy(ps))
	d.svc = service.New(nil, svcOpts...) // opening: UNAVAILABLE until the corpus is open
	d.svcs = server.Register(d.gs, d.svc, server.Options{Logger: log, Admin: c.Admin, ImportIdleTimeout: c.ImportIdleTimeout})
	grpcMetrics.InitializeMetrics(d.gs)
	if c.AdminSocket != "" {
		if err := d.serveAdminSocket(baseUnary, baseStream); err != nil {
			return err
		}
	}

	lis, err := d.listen(c.Addr, "grpc") // through a variable: a nil *connlimit.Listener is no nil net.Listener
	if err != nil {
		return err
	}
	d.lis = lis
	go func() { // NOT_SERVING until the corpus is open
		if err := d.gs.Serve(d.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			d.fail(fmt.Errorf("gRPC listener: %w", err))
		}
	}()
	if c.MetricsAddr != "" {
		metsLn, err := d.listen(c.MetricsAddr, "metrics")
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		d.metsLn = metsLn
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/readyz", d.readyz)
		d.mets = c.Network.httpServer(mux, log)
		if c.MetricsWebConfig != "" {
			d.serveWeb(d.mets, d.metsLn, c.MetricsWebConfig)
		} else {
			d.serveHTTP(d.mets, d.metsLn, "metrics listener")
		}
		log.Info("metrics", "addr", d.metsLn.Addr().String(), "web_config", c.MetricsWebConfig != "")
	}
	if c.HTTPAddr != "" {
		api, err := httpapi.New(d.svc, httpapi.Options{Logger: log, Authn: authn, Quota: limiter, OpenPublic: c.OpenPublic, Registerer: reg,
			Anonymous: anonymous, Refusals: refusals, TrustedProxies: c.TrustedProxies})
		if err != nil {
			return err
		}
		capped, err := d.listen(c.HTTPAddr, "http")
		if err != nil {
			return fmt.Errorf("HTTP listener: %w", err)
		}
		d.httpLn = capped
		var ln net.Listener = capped
		if c.HTTPServer == HTTPServerFast {
			ln = capped.Bare() // fasthttp reports closes to capped.Closed
		}
		if httpTLS != nil {
			ln = tls.NewListener(ln, httpTLS)
		}
		if c.HTTPServer == HTTPServerFast {
			d.fast = c.Network.fastServer(api.Fast(), capped.Closed, log)
			go func() {
				if err := d.fast.Serve(ln); err != nil {
					d.fail(fmt.Errorf("HTTP listener: %w", err))
				}
			}()
		} else {
			d.http = c.Network.httpServer(api, log)
			d.serveHTTP(d.http, ln, "HTTP listener")
		}
		log.Info("HTTP API", "addr", d.httpLn.Addr().String(), "tls", httpTLS != nil, "open_public", c.OpenPublic,
			"server", cmp.Or(c.HTTPServer, HTTPServerStd))
	}
	if err := d.openCorpora(ctx, reg); err != nil {
		return err
	}
	return nil
}

// openCorpora opens the email corpus and the password corpora, wires
// replication and starts serving (a replica: once it holds a whole corpus
// version).
func (d *Daemon) openCorpora(ctx context.Context, reg prometheus.Registerer) error {
	c, log := d.cfg, d.log
	start := time.Now()
	if _, err := store.MigrateLayout(c.Data, log); err != nil {
		return err
	}
	follower := c.Replication.Follow != ""
	// A published corpus keeps every change its next delta must carry
	// from the moment it opens (store.Options.Published).
	published := c.Replication.Publish != ""
	for _, dir := range store.ReplicatedDirs(c.Data) {
		if follower {
			// A replica whose corpus could not follow its writer any
			// more starts again from a snapshot.
			if _, err := natsrepl.Reset(dir, log); err != nil {
				return fmt.Errorf("emptying the replica's corpus in %s: %w", dir, err)
			}
			continue
		}
		// A replica restarted without replication.follow (a configuration
		// that lost it) would serve its last version for good, deleted
		// breaches included, saying it serves; and a backup it was
		// applying when it stopped would lie in its corpus half loaded,
		// which imports would build on.
		if natsrepl.Follows(dir) {
			return fmt.Errorf("%s holds a read replica's corpus (it has %s), which only its writer's backups change: serve it with replication.follow (--follow) naming the writer's NATS; a writer needs a data directory of its own (or, its disk lost, a stopped replica's turned into one by 'breachd replication promote')",
				dir, natsrepl.FollowedFile)
		}
	}
	eo := c.Emails
	eo.Logger, eo.Registerer, eo.Follower, eo.Published = log, reg, follower, published
	var err error
	if d.emails, err = store.Open(ctx, store.EmailDir(c.Data), eo); err != nil {
		return err
	}
	po := c.Passwords
	po.Logger, po.Registerer, po.Follower, po.Published = log, reg, follower, published
	for _, k := range breachd.HashKinds {
		p, err := store.OpenPasswords(ctx, store.PasswordDir(c.Data, k), k, po)
		if err != nil {
			return fmt.Errorf("%s password corpus: %w", k, err)
		}
		d.passwords[k] = p
		d.svc.OpenPasswords(k, p)
		log.Info("password corpus", "kind", k.String(), "hashes", p.Hashes(), "corpus_version", p.Version(), "releases", len(p.Releases()))
		if k == breachd.SHA1 && c.HTTPAddr != "" && !follower && len(p.Releases()) == 0 {
			// Exact for an empty corpus, but a Pwned Passwords client
			// (Kratos) would take every password as never seen.
			log.Warn("the sha1 password corpus has no release: /range answers every prefix with no hashes until one is imported (breachd import --kind sha1)")
		}
	}
	// The pair corpus: a password corpus's memory, sized like the email
	// corpus (a combolist has about as many pairs as accounts).
	pairOpts := po
	pairOpts.ExpectedKeys = c.Emails.ExpectedKeys
	if d.pairs, err = store.OpenPairs(ctx, store.PairDir(c.Data), pairOpts); err != nil {
		return fmt.Errorf("pair corpus: %w", err)
	}
	d.svc.OpenPairs(d.pairs)
	switch {
	case follower:
		if n := len(c.Watch.Webhooks); n > 0 {
			// One configuration often serves the writer and its replicas
			// (the role picked by --publish or --follow): not an error,
			// but the endpoints get nothing from here.
			d.log.Warn("watch.webhooks is set on a replica: only the writer computes and delivers exposure events; these endpoints get them from the writer or not at all",
				"endpoints", n)
		}
		d.follow()
	case c.Replication.Publish != "":
		if err := d.publish(); err != nil {
			return err
		}
		fallthrough
	default:
		if err := d.watchlists(ctx, po, reg); err != nil {
			return err
		}
		d.emails.OnCommit(func() {
			for _, fn := range d.onCommit {
				fn()
			}
		})
		d.svc.Open(d.emails)
		d.opened.Store(true)
		d.setServing(true)
	}
	stats := d.emails.Stats()
	log.Info("serving", "addr", d.lis.Addr().String(), "tls", c.TLS != nil, "mtls", c.TLS != nil && c.TLS.ClientCA != "", "admin", c.Admin,
		"breaches", stats.Breaches, "keys", stats.Keys, "corpus_version", stats.Version, "read_only", d.emails.ReadOnly() != nil,
		"open_duration", time.Since(start))
	return nil
}

// follow makes the daemon a read replica: every corpus follows its writer
// on NATS; the email corpus answers once it holds a whole version, and
// health says SERVING while every corpus is current (natsrepl.Follower).
func (d *Daemon) follow() {
	c := d.cfg
	o := c.Replication.NATS
	o.URL, o.Logger, o.Registerer = c.Replication.Follow, d.log, d.reg
	email := natsrepl.NewFollower(d.emails, store.EmailDir(c.Data), o)
	d.writer = email.Writer
	d.followers, d.followed = []*natsrepl.Follower{email}, []string{"email"}
	for _, k := range breachd.HashKinds {
		po := o
		po.Corpus = k.String()
		d.followers = append(d.followers, natsrepl.NewFollower(d.passwords[k], store.PasswordDir(c.Data, k), po))
		d.followed = append(d.followed, k.String()+" password")
	}
	po := o
	po.Corpus = pairsCorpus
	d.followers = append(d.followers, natsrepl.NewFollower(d.pairs, store.PairDir(c.Data), po))
	d.followed = append(d.followed, "pair")
	for _, f := range d.followers {
		f.OnReady = d.replicaHealth
		f.OnUnready = func(string) { d.replicaHealth() }
	}
	for _, f := range d.followers {
		d.background(func(ctx context.Context) {
			if err := f.Run(ctx); err != nil {
				d.fail(err)
			}
		})
	}
}

// replicaHealth sets a replica's health from its followers: the email
// corpus answers from its first whole version on; health is SERVING while
// every corpus is current.
func (d *Daemon) replicaHealth() {
	d.healthMu.Lock()
	defer d.healthMu.Unlock()
	if ok, _ := d.followers[0].Ready(); ok && !d.opened.Load() {
		d.svc.Open(d.emails)
		d.opened.Store(true)
	}
	ok, _ := d.Ready()
	d.setServing(ok)
}

// setServing sets the health of every listener's services.
func (d *Daemon) setServing(ok bool) {
	for _, s := range []*server.Services{d.svcs, d.adminSvcs} {
		switch {
		case s == nil:
		case ok:
			s.Serving()
		default:
			s.NotServing()
		}
	}
}

// Ready reports whether the daemon serves (health SERVING), and if not,
// why: its corpus is opening, or, on a replica, a corpus is not current.
func (d *Daemon) Ready() (bool, string) {
	if !d.opened.Load() && d.followers == nil {
		return false, "opening the corpus"
	}
	for i, f := range d.followers {
		if ok, why := f.Ready(); !ok {
			return false, d.followed[i] + " corpus: " + why
		}
	}
	return true, ""
}

// publish makes the daemon the writer of a corpus published on NATS: each
// corpus's publisher hears of every commit. Every corpus publishes under
// one writer lease, held by the ID kept in the data directory; another
// writer's lease stops the daemon.
func (d *Daemon) publish() error {
	c := d.cfg
	id, err := natsrepl.WriterID(c.Data)
	if err != nil {
		return fmt.Errorf("the writer's ID: %w", err)
	}
	o := c.Replication.NATS
	o.URL, o.Logger, o.Registerer, o.WriterID = c.Replication.Publish, d.log, d.reg, id
	advertise := c.Replication.Advertise
	if advertise == "" {
		advertise = d.lis.Addr().String()
	}
	run := func(pub *natsrepl.Publisher) {
		d.background(func(ctx context.Context) {
			if err := pub.Run(ctx); err != nil {
				d.fail(err)
			}
		})
	}
	pub := natsrepl.NewPublisher(d.emails, store.EmailDir(c.Data), advertise, o)
	d.onCommit = append(d.onCommit, pub.Kick)
	run(pub)
	for k, p := range d.passwords {
		po := o
		po.Corpus = k.String()
		pp := natsrepl.NewPublisher(p, store.PasswordDir(c.Data, k), advertise, po)
		p.OnCommit(pp.Kick)
		run(pp)
	}
	po := o
	po.Corpus = pairsCorpus
	pp := natsrepl.NewPublisher(d.pairs, store.PairDir(c.Data), advertise, po)
	d.pairs.OnCommit(pp.Kick)
	run(pp)
	return nil
}

// watchlists opens a writer's watchlists and starts what computes their
// exposure events (after each commit, and once at start for what a
// stopped daemon left) and what delivers them.
func (d *Daemon) watchlists(ctx context.Context, o store.Options, reg prometheus.Registerer) error {
	c := d.cfg
	o.ExpectedKeys = 1 << 22 // 4M accounts before the filter first grows (7 MB)
	var err error
	if d.watch, err = store.OpenWatchlists(ctx, store.WatchDir(c.Data), d.emails, o); err != nil {
		return fmt.Errorf("watchlists: %w", err)
	}
	targets := webhook.Hooks(c.Watch.Webhooks, nil)
	if c.Replication.Publish != "" {
		o := c.Replication.NATS
		o.URL, o.Logger = c.Replication.Publish, d.log
		t := natsrepl.NewEventTarget(o)
		targets = append(targets, t)
		d.closers = append(d.closers, t.Close)
	}
	d.svc.OpenWatchlists(d.watch, webhook.Names(targets))
	sender, err := webhook.New(d.watch, targets, webhook.Options{Logger: d.log, RetryFor: c.Watch.RetryFor, Registerer: reg})
	if err != nil {
		return fmt.Errorf("watch.webhooks: %w", err)
	}
	d.background(sender.Run)
	d.background(func(ctx context.Context) { d.pruneEvents(ctx, webhook.Names(targets)) })
	exposures := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "breachd_watch_exposures_total",
		Help: "Watched accounts reported in exposure events, by type (added, removed)."}, []string{"type"})
	events := prometheus.NewCounter(prometheus.CounterOpts{Name: "breachd_watch_events_total", Help: "Exposure events written to the outbox."})
	reg.MustRegister(exposures, events)
	kick := make(chan struct{}, 1)
	reconcile := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	reconcile() // at start
	d.onCommit = append(d.onCommit, reconcile)
	d.background(func(ctx context.Context) {
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			}
			st, err := d.watch.Reconcile(ctx)
			if err != nil {
				if ctx.Err() == nil {
					d.log.Error("computing exposure events failed; retrying at the next commit or in a minute", "err", err)
					time.AfterFunc(time.Minute, reconcile)
				}
				continue
			}
			exposures.WithLabelValues("added").Add(float64(st.Added))
			exposures.WithLabelValues("removed").Add(float64(st.Removed))
			events.Add(float64(st.Events))
			if st.Events > 0 {
				sender.Kick()
			}
		}
	})
	return nil
}

// pruneEvents deletes, every hour, the events older than the retention
// period that every target has had.
func (d *Daemon) pruneEvents(ctx context.Context, targets []string) {
	retention := cmp.Or(d.cfg.Watch.Retention, 30*24*time.Hour)
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if _, err := d.watch.PruneEvents(ctx, time.Now().Add(-retention), targets); err != nil && ctx.Err() == nil {
			d.log.Warn("pruning delivered events failed; retrying in an hour", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Watchlists returns a writer's watchlists (nil on a replica).
func (d *Daemon) Watchlists() *store.Watchlists { return d.watch }

// readyz answers 200 while the daemon serves, 503 and the reason while it
// does not (a load balancer's or Kubernetes' readiness probe).
func (d *Daemon) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if ok, why := d.Ready(); !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready:", why)
		return
	}
	fmt.Fprintln(w, "ready")
}

// fail reports an error that stops the daemon (serve exits with it).
func (d *Daemon) fail(err error) {
	select {
	case d.failed <- err:
	default: // one is enough to stop it
	}
}

// replicaRefusal words the refusal of a change on a replica.
func (d *Daemon) replicaRefusal() error {
	hint := ""
	if d.writer != nil {
		if w := d.writer(); w != "" {
			hint = " at " + w
		}
	}
	return breachd.Errorf(breachd.ErrFailedPrecondition, "this daemon is a read replica of the corpus published on NATS (%s): import, delete and correct breaches on the writer%s",
		d.cfg.Replication.Follow, hint)
}

// background runs fn until the daemon stops (Shutdown or Close wait for it).
func (d *Daemon) background(run func(context.Context)) {
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		run(d.bgCtx)
	}()
}

func (d *Daemon) serveHTTP(s *http.Server, ln net.Listener, what string) {
	go func() {
		if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			d.fail(fmt.Errorf("%s: %w", what, err))
		}
	}()
}

// Addr is the gRPC listener's address.
func (d *Daemon) Addr() string { return d.lis.Addr().String() }

// HTTPAddr is the HTTP face's address, or "" without one.
func (d *Daemon) HTTPAddr() string {
	if d.httpLn == nil {
		return ""
	}
	return d.httpLn.Addr().String()
}

// HTTPScheme is the HTTP face's scheme: https with TLS.
func (d *Daemon) HTTPScheme() string {
	if d.cfg.TLS != nil {
		return "https"
	}
	return "http"
}

// MetricsAddr is the metrics listener's address, or "" without one.
func (d *Daemon) MetricsAddr() string {
	if d.metsLn == nil {
		return ""
	}
	return d.metsLn.Addr().String()
}

// AdminSocket is the admin socket's path, or "" without one.
func (d *Daemon) AdminSocket() string {
	if d.adminLn == nil {
		return ""
	}
	return d.cfg.AdminSocket
}

// Emails is the email corpus.
func (d *Daemon) Emails() *store.Store { return d.emails }

// Passwords is the password corpus of kind k.
func (d *Daemon) Passwords(k breachd.HashKind) *store.Passwords { return d.passwords[k] }

// Service is the use cases the daemon serves.
func (d *Daemon) Service() *service.Service { return d.svc }

// Failed receives the error of a listener that stopped by itself.
func (d *Daemon) Failed() <-chan error { return d.failed }

// Reload re-reads the TLS files and the API keys now (SIGHUP); a failure
// keeps what was in use, and is returned.
func (d *Daemon) Reload() error {
	var errs []error
	if d.tlsFiles != nil {
		if err := d.tlsFiles.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("TLS files: %w", err))
		}
	}
	if d.keys != nil {
		if _, err := d.keys.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("API keys: %w", err))
		}
	}
	return errors.Join(errs...)
}

// SetIdentities replaces the client-certificate identities (the
// configuration re-read on SIGHUP): new calls are mapped by them at once,
// and open streams of a certificate they no longer map (or map to another
// principal) end. Invalid identities are refused and the old ones kept.
func (d *Daemon) SetIdentities(ids []auth.CertIdentity) error {
	if d.authn == nil {
		if len(ids) > 0 {
			return breachd.Errorf(breachd.ErrFailedPrecondition, "client-certificate identities need TLS, which this daemon was started without")
		}
		return nil
	}
	if err := d.authn.SetCertIdentities(ids); err != nil {
		return err
	}
	d.guard.Revalidate()
	return nil
}

// Shutdown stops the daemon gracefully: health NOT_SERVING, bulk streams
// told to end, calls in flight given until ctx is done (or the configured
// shutdown timeout); then the background work stops and the corpora close.
func (d *Daemon) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.ShutdownTimeout)
	defer cancel()
	return d.stop(ctx)
}

// Close stops the daemon at once: open calls are cut.
func (d *Daemon) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return d.stop(ctx)
}

func (d *Daemon) stop(ctx context.Context) error {
	var err error
	d.once.Do(func() {
		d.log.Info("shutting down", "timeout", d.cfg.ShutdownTimeout)
		if d.http != nil {
			d.http.Shutdown(ctx)
		}
		if d.fast != nil {
			d.fast.ShutdownWithContext(ctx)
		}
		if d.svcs != nil {
			d.svcs.Shutdown(ctx, d.gs, d.log)
		} else if d.gs != nil {
			d.gs.Stop()
		}
		if d.adminSvcs != nil {
			d.adminSvcs.Shutdown(ctx, d.adminGS, d.log)
		}
		if d.mets != nil {
			d.mets.Shutdown(ctx)
		}
		for _, l := range []net.Listener{d.lis, d.httpLn, d.metsLn, d.adminLn} {
			if l != nil {
				l.Close()
			}
		}
		d.cancel()
		d.bg.Wait()
		for _, fn := range d.closers {
			fn()
		}
		var errs []error
		if d.watch != nil {
			if e := d.watch.Close(); e != nil {
				errs = append(errs, fmt.Errorf("watchlists: %w", e))
			}
		}
		if d.emails != nil {
			if e := d.emails.Close(); e != nil {
				errs = append(errs, fmt.Errorf("email corpus: %w", e))
			}
		}
		for k, p := range d.passwords {
			if e := p.Close(); e != nil {
				errs = append(errs, fmt.Errorf("%s password corpus: %w", k, e))
			}
		}
		if d.pairs != nil {
			if e := d.pairs.Close(); e != nil {
				errs = append(errs, fmt.Errorf("pair corpus: %w", e))
			}
		}
		err = errors.Join(errs...)
		d.log.Info("stopped")
	})
	return err
}

// warnPolicyPrincipals logs each policy of a principal that no caller can
// be, when the daemon starts: a misspelt name, or any name on a daemon
// that identifies no one (no TLS), would leave that principal's calls to
// the default policy, silently. (A key made later is found then: a
// warning, not an error.)
func (d *Daemon) warnPolicyPrincipals() {
	c := d.cfg
	for _, name := range slices.Sorted(maps.Keys(c.Policy.ByPrincipal)) {
		if c.TLS == nil {
			d.log.Warn("policy.principals: without TLS this daemon identifies no caller, so every assessment gets the default policy", "principal", name)
			continue
		}
		known := d.keys != nil && d.keys.Names(name)
		for _, id := range c.Auth.Identities {
			known = known || id.Principal.Name == name
		}
		if !known {
			d.log.Warn("policy.principals: no API key or client certificate identifies this principal (yet): its policy applies to no one until one does", "principal", name)
		}
	}
}
