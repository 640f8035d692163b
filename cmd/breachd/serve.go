package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/certs"
	"github.com/breachd/breachd/httpapi"
	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/quota"
	"github.com/breachd/breachd/server"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
)

func parseServe(args []string, stderr io.Writer) (config, error) {
	c, err := loadConfig("breachd serve", args, stderr, os.Getenv)
	if err != nil {
		return c, err
	}
	return c, c.validate()
}

// isLoopback reports whether a listen address keeps to this machine.
func isLoopback(addr string) bool {
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

func serve(ctx context.Context, c config, stdout io.Writer, log *slog.Logger) error {
	secure := c.TLS.Cert != ""
	if !secure && !isLoopback(c.Addr) {
		return fmt.Errorf("refusing to listen on %s without TLS and authentication: set tls.cert and tls.key (--tls-cert, --tls-key), "+
			"then create API keys ('breachd keys create') or map client certificates (auth.mtls_identities); or listen on 127.0.0.1", c.Addr)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// The chain, in a fixed order: recovery, logging, metrics, then
	// authentication and quotas (with TLS only), then the handlers, which
	// validate their requests.
	unary, stream := server.Interceptors(log)
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	reg.MustRegister(grpcMetrics)
	unary = append(unary, grpcMetrics.UnaryServerInterceptor())
	stream = append(stream, grpcMetrics.StreamServerInterceptor())
	if c.HTTP.Addr != "" && !secure && !isLoopback(c.HTTP.Addr) {
		return fmt.Errorf("refusing to serve HTTP on %s without TLS and authentication: set tls.cert and tls.key, or listen on 127.0.0.1", c.HTTP.Addr)
	}
	opts := c.limits().ServerOptions()
	var reloadTLS, reloadKeys func() error
	var httpTLS *tls.Config
	var authn *auth.Authenticator
	var limiter *quota.Limiter
	if secure {
		tlsFiles, err := certs.Load(certs.Files{Cert: c.TLS.Cert, Key: c.TLS.Key, ClientCA: c.TLS.ClientCA, Auth: certs.ClientAuth(c.TLS.ClientAuth)}, log)
		if err != nil {
			return err
		}
		go func() {
			if err := tlsFiles.Watch(ctx); err != nil {
				log.Error("watching TLS files failed; reload them with SIGHUP", "err", err)
			}
		}()
		reloadTLS = tlsFiles.Reload
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsFiles.ServerConfig())))
		httpTLS = tlsFiles.HTTPServerConfig()

		var keys *auth.Keyring
		if c.Auth.APIKeys {
			if keys, err = auth.OpenKeyring(c.Data, log); err != nil {
				return err
			}
			go keys.Watch(ctx, time.Duration(c.Auth.KeysReload))
			reloadKeys = func() error { _, err := keys.Reload(); return err }
		}
		var ids []auth.CertIdentity
		for _, m := range c.Auth.MTLSIdentities {
			ci, _ := m.principal() // validated
			ids = append(ids, ci)
		}
		if authn, err = auth.NewAuthenticator(keys, ids); err != nil {
			return err
		}
		if limiter, err = quota.New(c.quotaLimits(), c.Quota.MaxStreams); err != nil {
			return keyError(err)
		}
		guard, err := server.NewGuard(authn, limiter, server.GuardOptions{Logger: log, Registerer: reg,
			Reflection: c.Auth.Reflection, MaxStreamWait: time.Duration(c.Quota.MaxStreamWait)})
		if err != nil {
			return err
		}
		gu, gs := guard.Interceptors()
		unary, stream = append(unary, gu...), append(stream, gs...)
		if (keys == nil || keys.Len() == 0) && len(ids) == 0 {
			log.Warn("no API keys and no mTLS identities: every call will be refused until you run 'breachd keys create'")
		}
	}
	opts = append(opts, grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))
	gs := grpc.NewServer(opts...)
	var corpus openingStore
	var sha1s, ntlms openingPasswords
	svc := service.New(&corpus, service.WithPasswords(breachd.SHA1, &sha1s), service.WithPasswords(breachd.NTLM, &ntlms))
	svcs := server.Register(gs, svc, server.Options{Logger: log, Admin: c.Admin,
		ImportIdleTimeout: time.Duration(c.Import.IdleTimeout)})
	grpcMetrics.InitializeMetrics(gs)

	lis, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return err
	}
	served := make(chan error, 2)
	go func() { served <- gs.Serve(lis) }() // NOT_SERVING until the corpus is open
	var metricsSrv *http.Server
	metricsNote := ""
	if c.MetricsAddr != "" {
		mlis, err := net.Listen("tcp", c.MetricsAddr)
		if err != nil {
			gs.Stop()
			return fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := metricsSrv.Serve(mlis); !errors.Is(err, http.ErrServerClosed) {
				served <- fmt.Errorf("metrics listener: %w", err)
			}
		}()
		log.Info("metrics", "addr", mlis.Addr().String())
		metricsNote = fmt.Sprintf(", metrics on http://%s/metrics", mlis.Addr())
	}
	var httpSrv *http.Server
	httpNote := ""
	if c.HTTP.Addr != "" {
		api, err := httpapi.New(svc, httpapi.Options{Logger: log, Authn: authn, Quota: limiter, OpenPublic: c.HTTP.OpenPublic, Registerer: reg})
		if err != nil {
			gs.Stop()
			return err
		}
		hlis, err := net.Listen("tcp", c.HTTP.Addr)
		if err != nil {
			gs.Stop()
			return fmt.Errorf("HTTP listener: %w", err)
		}
		scheme := "http"
		if httpTLS != nil {
			hlis, scheme = tls.NewListener(hlis, httpTLS), "https"
		}
		httpSrv = &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() {
			if err := httpSrv.Serve(hlis); !errors.Is(err, http.ErrServerClosed) {
				served <- fmt.Errorf("HTTP listener: %w", err)
			}
		}()
		log.Info("HTTP API", "addr", hlis.Addr().String(), "tls", httpTLS != nil, "open_public", c.HTTP.OpenPublic)
		httpNote = fmt.Sprintf(", HTTP API on %s://%s", scheme, hlis.Addr())
	}
	stop := func() {
		log.Info("shutting down", "timeout", c.ShutdownTimeout)
		sctx, cancel := context.WithTimeout(context.Background(), time.Duration(c.ShutdownTimeout))
		defer cancel()
		if httpSrv != nil {
			httpSrv.Shutdown(sctx)
		}
		svcs.Shutdown(sctx, gs, log)
		if metricsSrv != nil {
			metricsSrv.Shutdown(sctx)
		}
	}

	start := time.Now()
	so := c.storeOptions()
	so.Logger, so.Registerer = log, reg
	so.Follower = c.Replication.Follow != ""
	if _, err := store.MigrateLayout(c.Data, log); err != nil {
		stop()
		return err
	}
	st, err := store.Open(ctx, store.EmailDir(c.Data), so)
	if err != nil {
		stop()
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing store failed", "err", err)
		}
	}()
	for _, o := range []struct {
		k breachd.HashKind
		w *openingPasswords
	}{{breachd.SHA1, &sha1s}, {breachd.NTLM, &ntlms}} {
		po := c.passwordOptions(log)
		po.Follower = so.Follower
		pw, err := store.OpenPasswords(ctx, store.PasswordDir(c.Data, o.k), o.k, po)
		if err != nil {
			stop()
			return fmt.Errorf("%s password corpus: %w", o.k, err)
		}
		defer func() {
			if err := pw.Close(); err != nil {
				log.Error("closing password corpus failed", "kind", o.k.String(), "err", err)
			}
		}()
		o.w.p.Store(pw)
		log.Info("password corpus", "kind", o.k.String(), "hashes", pw.Hashes(), "corpus_version", pw.Version(), "releases", len(pw.Releases()))
	}
	// The replication goroutines end with ctx, before the store closes.
	var bg sync.WaitGroup
	defer func() { cancel(); bg.Wait() }()
	goRun := func(run func(context.Context)) {
		bg.Add(1)
		go func() { defer bg.Done(); run(ctx) }()
	}
	role := ""
	switch {
	case c.Replication.Follow != "":
		// A replica serves once it holds a whole corpus version: at once if
		// its last apply completed, otherwise when the follower catches up.
		o, err := c.natsOptions(c.Replication.Follow, log)
		if err != nil {
			stop()
			return err
		}
		f := natsrepl.NewFollower(st, store.EmailDir(c.Data), o)
		corpus.replica = func() error {
			return breachd.Errorf(breachd.ErrFailedPrecondition, "this daemon is a read replica of the corpus published on NATS (%s): import, delete and correct breaches on the writer%s",
				c.Replication.Follow, writerHint(f.Writer()))
		}
		f.OnReady = func() {
			corpus.open(st)
			svcs.Serving()
			log.Info("replica serving", "corpus_version", st.Version())
		}
		goRun(f.Run)
		for _, pw := range []*openingPasswords{&sha1s, &ntlms} {
			pw.replica = corpus.replica
			p, po := pw.p.Load(), o
			po.Corpus = p.Kind().String()
			goRun(natsrepl.NewFollower(p, store.PasswordDir(c.Data, p.Kind()), po).Run)
		}
		role = ", read replica of " + c.Replication.Follow
	case c.Replication.Publish != "":
		o, err := c.natsOptions(c.Replication.Publish, log)
		if err != nil {
			stop()
			return err
		}
		advertise := c.Replication.Advertise
		if advertise == "" {
			advertise = lis.Addr().String()
		}
		pub := natsrepl.NewPublisher(st, store.EmailDir(c.Data), advertise, o)
		corpus.changed = pub.Kick
		goRun(pub.Run)
		for _, pw := range []*openingPasswords{&sha1s, &ntlms} {
			p, po := pw.p.Load(), o
			po.Corpus = p.Kind().String()
			pp := natsrepl.NewPublisher(p, store.PasswordDir(c.Data, p.Kind()), advertise, po)
			pw.changed = pp.Kick
			goRun(pp.Run)
		}
		role = ", publishing to " + c.Replication.Publish
		fallthrough
	default:
		corpus.open(st)
		svcs.Serving()
	}
	stats := st.Stats()
	log.Info("serving", "addr", lis.Addr().String(), "tls", secure, "mtls", c.TLS.ClientCA != "", "admin", c.Admin,
		"breaches", stats.Breaches, "keys", stats.Keys, "corpus_version", stats.Version, "read_only", st.ReadOnly() != nil,
		"open_duration", time.Since(start))
	if c.Replication.Follow != "" {
		fmt.Fprintf(stdout, "breachd: read replica on %s%s%s, following %s; it serves once it holds a whole corpus version (it holds version %d)\n",
			lis.Addr(), httpNote, metricsNote, c.Replication.Follow, stats.Version)
	} else {
		fmt.Fprintf(stdout, "breachd: serving %d breaches (%d accounts, corpus version %d) on %s%s%s%s\n",
			stats.Breaches, stats.Keys, stats.Version, lis.Addr(), httpNote, metricsNote, role)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case err := <-served: // a listener failed
			stop()
			return err
		case <-hup:
			for what, reload := range map[string]func() error{"TLS files": reloadTLS, "API keys": reloadKeys} {
				if reload == nil {
					continue
				}
				if err := reload(); err != nil {
					log.Error("reload on SIGHUP failed; keeping what was in use", "what", what, "err", err)
				}
			}
		case <-ctx.Done():
			stop()
			log.Info("stopped")
			return nil
		}
	}
}

// openingStore is the corpus as the services see it while it opens (which
// takes minutes for a large corpus whose filter must be rebuilt): until
// open, every call is UNAVAILABLE, and health says NOT_SERVING.
type openingStore struct {
	st atomic.Pointer[store.Store]
	// On a writer that publishes, changed asks for a publish after a
	// change; on a replica, replica words the refusal of a change.
	changed func()
	replica func() error
}

// write gets the store for a change: refused on a replica.
func (o *openingStore) write() (*store.Store, error) {
	if o.replica != nil {
		return nil, o.replica()
	}
	return o.get()
}

func (o *openingStore) done(err error) {
	if err == nil && o.changed != nil {
		o.changed()
	}
}

var errOpening = breachd.NewError(breachd.ErrUnavailable, "the corpus is still opening")

func (o *openingStore) open(st *store.Store) { o.st.Store(st) }

func (o *openingStore) get() (*store.Store, error) {
	if st := o.st.Load(); st != nil {
		return st, nil
	}
	return nil, errOpening
}

func (o *openingStore) Lookup(ctx context.Context, d breachd.Digest) ([]*breachd.CatalogEntry, uint64, error) {
	st, err := o.get()
	if err != nil {
		return nil, 0, err
	}
	return st.Lookup(ctx, d)
}

func (o *openingStore) LookupBatch(ctx context.Context, packed []byte, hit func(int, []*breachd.CatalogEntry)) (uint64, error) {
	st, err := o.get()
	if err != nil {
		return 0, err
	}
	return st.LookupBatch(ctx, packed, hit)
}

func (o *openingStore) Breaches(ctx context.Context) ([]*breachd.CatalogEntry, uint64, error) {
	st, err := o.get()
	if err != nil {
		return nil, 0, err
	}
	return st.Breaches(ctx)
}

func (o *openingStore) Breach(ctx context.Context, name string) (*breachd.CatalogEntry, uint64, error) {
	st, err := o.get()
	if err != nil {
		return nil, 0, err
	}
	return st.Breach(ctx, name)
}

func (o *openingStore) Import(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.Digest, error]) (breachd.ImportStats, error) {
	st, err := o.write()
	if err != nil {
		return breachd.ImportStats{}, err
	}
	is, err := st.Import(ctx, b, batches)
	o.done(err)
	return is, err
}

func (o *openingStore) DeleteBreach(ctx context.Context, name string) (uint64, uint64, error) {
	st, err := o.write()
	if err != nil {
		return 0, 0, err
	}
	removed, v, err := st.DeleteBreach(ctx, name)
	o.done(err)
	return removed, v, err
}

func (o *openingStore) UpdateBreach(ctx context.Context, b breachd.Breach) (*breachd.CatalogEntry, uint64, error) {
	st, err := o.write()
	if err != nil {
		return nil, 0, err
	}
	e, v, err := st.UpdateBreach(ctx, b)
	o.done(err)
	return e, v, err
}

// openingPasswords is a password corpus as the services see it while it
// opens: UNAVAILABLE until then.
type openingPasswords struct {
	p       atomic.Pointer[store.Passwords]
	replica func() error // on a replica, refuses imports
	changed func()       // on a writer that publishes, asks for a publish
}

func writerHint(addr string) string {
	if addr == "" {
		return ""
	}
	return " at " + addr
}

func (o *openingPasswords) Lookup(ctx context.Context, h breachd.PasswordHash) (breachd.PasswordExposure, error) {
	p := o.p.Load()
	if p == nil {
		return breachd.PasswordExposure{}, errOpening
	}
	return p.Lookup(ctx, h)
}

func (o *openingPasswords) Range(ctx context.Context, prefix breachd.RangePrefix, fn func([]byte, uint64)) (uint64, error) {
	p := o.p.Load()
	if p == nil {
		return 0, errOpening
	}
	return p.Range(ctx, prefix, fn)
}

func (o *openingPasswords) Import(ctx context.Context, rel breachd.Breach, expected uint64, batches iter.Seq2[[]breachd.PasswordRecord, error]) (breachd.PasswordImportStats, error) {
	if o.replica != nil {
		return breachd.PasswordImportStats{}, o.replica()
	}
	p := o.p.Load()
	if p == nil {
		return breachd.PasswordImportStats{}, errOpening
	}
	st, err := p.Import(ctx, rel, expected, batches)
	if err == nil && o.changed != nil {
		o.changed()
	}
	return st, err
}
