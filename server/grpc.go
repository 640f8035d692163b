package server

import (
	"context"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// Limits on what one client can make the daemon hold.
const (
	// MaxRecvMsgSize fits one full batch (MaxBatch digests) with room to spare.
	MaxRecvMsgSize = 1 << 20
	// DefaultMaxConcurrentStreams bounds the calls in flight per connection.
	DefaultMaxConcurrentStreams = 1024
)

// Store is everything the daemon's services need from the corpus.
type Store interface {
	Corpus
	Importer
}

// Options configure New.
type Options struct {
	Logger *slog.Logger
	// Admin registers the AdminService. Off unless asked for.
	Admin bool
	// MaxConcurrentStreams per connection. Default DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
}

// Server is the daemon's gRPC server: the services, health and reflection.
type Server struct {
	grpc   *grpc.Server
	health *health.Server
	log    *slog.Logger
}

// New assembles the gRPC server over st.
func New(st Store, opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConcurrentStreams == 0 {
		opts.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(recoverUnary(log), logUnary(log)),
		grpc.ChainStreamInterceptor(recoverStream(log), logStream(log)),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.MaxConcurrentStreams(opts.MaxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: 15 * time.Minute, // reclaim abandoned connections
			Time:              2 * time.Minute,  // ping an idle client to check it is alive
			Timeout:           20 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second, // refuse clients that ping more often
			PermitWithoutStream: true,
		}),
	)
	breachdv1.RegisterExposureServiceServer(gs, NewExposure(st, log))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus(breachdv1.ExposureService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if opts.Admin {
		breachdv1.RegisterAdminServiceServer(gs, NewAdmin(st, log))
		hs.SetServingStatus(breachdv1.AdminService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	}
	reflection.Register(gs)
	return &Server{grpc: gs, health: hs, log: log}
}

// Serve accepts connections on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error { return s.grpc.Serve(lis) }

// Shutdown marks the server NOT_SERVING, lets calls in flight finish until ctx
// is done, then closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("graceful stop timed out; closing remaining calls")
		s.grpc.Stop()
		<-done
	}
}

func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(srv, ss)
	}
}

// logCall logs a finished call: method, code and duration, never its payload.
// Ordinary outcomes go to debug level so a busy daemon stays quiet.
func logCall(ctx context.Context, log *slog.Logger, method string, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelDebug
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.ResourceExhausted, codes.Unavailable:
		level = slog.LevelWarn
	}
	if !log.Enabled(ctx, level) {
		return
	}
	log.LogAttrs(ctx, level, "call", slog.String("method", method), slog.String("code", code.String()),
		slog.Duration("duration", time.Since(start)))
}

func logUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logCall(ctx, log, info.FullMethod, start, err)
		return resp, err
	}
}

func logStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logCall(ss.Context(), log, info.FullMethod, start, err)
		return err
	}
}
