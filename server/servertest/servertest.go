package servertest

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/breachd/breachd"
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
// over a store with store.DefaultOptions.
type Options struct {
	Admin  bool           // register the AdminService too
	Store  *store.Options // nil: store.DefaultOptions()
	Logger *slog.Logger   // nil: discard
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
	gs := grpc.NewServer(append(server.DefaultLimits().ServerOptions(),
		grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))...)
	svcs := server.Register(gs, svc, server.Options{Logger: log, Admin: opts.Admin})
	svcs.Serving()
	s := &Server{Addr: lis.Addr().String(), Store: st, Service: svc, GRPC: gs, svcs: svcs, served: make(chan error, 1)}
	go func() { s.served <- gs.Serve(lis) }()
	return s, nil
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
