package servertest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/certs"
	"github.com/breachd/breachd/quota"
	"github.com/breachd/breachd/server"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
)

// Server is a running daemon.
type Server struct {
	Addr    string       // host:port it listens on
	Store   *store.Store // the corpus it serves
	Service *service.Service
	GRPC    *grpc.Server
	svcs    *server.Services
	served  chan error
}

// Options configure Start. The zero value serves the ExposureService only,
// over a store with store.DefaultOptions, in plaintext.
type Options struct {
	Admin  bool           // register the AdminService too
	Store  *store.Options // nil: store.DefaultOptions()
	Logger *slog.Logger   // nil: discard
	// Secure, if set, serves over TLS with authentication and quotas, as
	// 'breachd serve --tls-cert ...' does.
	Secure *Secure
	// ImportIdleTimeout as in server.Options.
	ImportIdleTimeout time.Duration
}

// Secure is the TLS and authentication of a server. API keys are read from
// the data directory's key file at Start (create them before).
type Secure struct {
	CertFile, KeyFile string
	ClientCA          string
	Identities        []auth.CertIdentity
	Quota             quota.Limits // every principal's default
	MaxStreams        int          // per principal; 0 means 8
}

// Start opens (creating) a store in dir and serves it.
func Start(dir string, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	so := store.DefaultOptions()
	if opts.Store != nil {
		so = *opts.Store
	}
	so.Logger = log
	st, err := store.Open(context.Background(), dir, so)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		st.Close()
		return nil, err
	}
	svc := service.New(st)
	unary, stream := server.Interceptors(log)
	sopts := server.DefaultLimits().ServerOptions()
	if sec := opts.Secure; sec != nil {
		creds, gu, gst, err := secure(dir, sec, log)
		if err != nil {
			st.Close()
			lis.Close()
			return nil, err
		}
		sopts = append(sopts, creds)
		unary, stream = append(unary, gu...), append(stream, gst...)
	}
	gs := grpc.NewServer(append(sopts, grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))...)
	svcs := server.Register(gs, svc, server.Options{Logger: log, Admin: opts.Admin, ImportIdleTimeout: opts.ImportIdleTimeout})
	svcs.Serving()
	s := &Server{Addr: lis.Addr().String(), Store: st, Service: svc, GRPC: gs, svcs: svcs, served: make(chan error, 1)}
	go func() { s.served <- gs.Serve(lis) }()
	return s, nil
}

// secure returns the TLS credentials and guard interceptors of sec.
func secure(dir string, sec *Secure, log *slog.Logger) (grpc.ServerOption, []grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor, error) {
	files, err := certs.Load(certs.Files{Cert: sec.CertFile, Key: sec.KeyFile, ClientCA: sec.ClientCA, Auth: certs.VerifyIfGiven}, log)
	if err != nil {
		return nil, nil, nil, err
	}
	keys, err := auth.OpenKeyring(dir, log)
	if err != nil {
		return nil, nil, nil, err
	}
	authn, err := auth.NewAuthenticator(keys, sec.Identities)
	if err != nil {
		return nil, nil, nil, err
	}
	maxStreams := sec.MaxStreams
	if maxStreams == 0 {
		maxStreams = 8
	}
	limiter, err := quota.New(sec.Quota, maxStreams)
	if err != nil {
		return nil, nil, nil, err
	}
	guard, err := server.NewGuard(authn, limiter, server.GuardOptions{Logger: log, Reflection: true, MaxStreamWait: 5 * time.Second})
	if err != nil {
		return nil, nil, nil, err
	}
	u, st := guard.Interceptors()
	return grpc.Creds(credentials.NewTLS(files.ServerConfig())), u, st, nil
}

// Dial returns a plaintext client connection to the server.
func (s *Server) Dial() (*grpc.ClientConn, error) {
	return grpc.NewClient(s.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// Import imports breach b with digests ds straight into the store (not
// through the AdminService), as one batch or several of at most
// breachd.MaxBatch.
func (s *Server) Import(ctx context.Context, b breachd.Breach, ds []breachd.Digest) (breachd.ImportStats, error) {
	return s.Service.Import(ctx, b, func(yield func([]breachd.Digest, error) bool) {
		for len(ds) > 0 {
			n := min(len(ds), breachd.MaxBatch)
			if !yield(ds[:n], nil) {
				return
			}
			ds = ds[n:]
		}
	})
}

// Shutdown runs the daemon's shutdown (health NOT_SERVING, bulk streams
// told to end, calls in flight given until ctx is done) and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.svcs.Shutdown(ctx, s.GRPC, slog.New(slog.DiscardHandler))
	<-s.served
	return s.Store.Close()
}

// Close stops serving at once (health NOT_SERVING, open calls cut) and
// closes the store.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no grace: tests want it gone
	s.svcs.Shutdown(ctx, s.GRPC, slog.New(slog.DiscardHandler))
	err := <-s.served
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return errors.Join(err, s.Store.Close())
}
