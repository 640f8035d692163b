package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/grpccodec"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/service"
)

// TransportLimits bound what one client can make the daemon hold over its
// connections (messages, streams, keepalives): quota.Limits bound what it
// may ask for. Start from
// DefaultTransportLimits; Validate refuses values that cannot work.
type TransportLimits struct {
	// MaxRecvMsgSize is the largest request in bytes; it must fit a full
	// batch (breachd.MaxBatch digests, 320,000 bytes) and its framing.
	MaxRecvMsgSize int
	// MaxSendMsgSize is the largest answer in bytes (a full catalogue page
	// is about 2 MB).
	MaxSendMsgSize int
	// MaxConcurrentStreams bounds the calls in flight on one connection.
	MaxConcurrentStreams uint32
	// MaxConnectionIdle closes connections with no call for this long.
	MaxConnectionIdle time.Duration
	// MaxConnectionAge asks clients to reconnect after this long (GOAWAY),
	// so that a client balancing over replicas re-resolves and spreads
	// again as replicas come and go; MaxConnectionAgeGrace is how long
	// calls in flight (a long bulk stream) may still take after it.
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// KeepaliveTime is how long a connection may be quiet before the server
	// pings it; KeepaliveTimeout how long it waits for the answer.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// MinPingInterval refuses clients that ping more often than this.
	MinPingInterval time.Duration
}

// minRecvMsgSize fits one full batch of digests plus protobuf framing.
const minRecvMsgSize = breachd.MaxBatch*breachd.DigestSize + 1024

// DefaultTransportLimits returns the daemon's limits unless configured otherwise.
func DefaultTransportLimits() TransportLimits {
	return TransportLimits{
		MaxRecvMsgSize:        1 << 20,
		MaxSendMsgSize:        4 << 20,
		MaxConcurrentStreams:  1024,
		MaxConnectionIdle:     15 * time.Minute, // reclaim abandoned connections
		MaxConnectionAge:      5 * time.Minute,
		MaxConnectionAgeGrace: time.Hour,
		KeepaliveTime:         2 * time.Minute,
		KeepaliveTimeout:      20 * time.Second,
		MinPingInterval:       10 * time.Second,
	}
}

// Validate reports the first unusable limit as a *breachd.OptionError.
func (l TransportLimits) Validate() error {
	switch {
	case l.MaxRecvMsgSize < minRecvMsgSize || l.MaxRecvMsgSize > 64<<20:
		return &breachd.OptionError{Option: "MaxRecvMsgSize", Value: l.MaxRecvMsgSize, Want: fmt.Sprintf("%d bytes (one full batch) to 64 MiB", minRecvMsgSize)}
	case l.MaxSendMsgSize < 3<<20 || l.MaxSendMsgSize > 64<<20:
		return &breachd.OptionError{Option: "MaxSendMsgSize", Value: l.MaxSendMsgSize, Want: "3 MiB (one full catalogue page) to 64 MiB"}
	case l.MaxConcurrentStreams < 1:
		return &breachd.OptionError{Option: "MaxConcurrentStreams", Value: l.MaxConcurrentStreams, Want: "at least 1"}
	case l.MaxConnectionIdle <= 0:
		return &breachd.OptionError{Option: "MaxConnectionIdle", Value: l.MaxConnectionIdle, Want: "a positive duration"}
	case l.MaxConnectionAge < time.Second:
		return &breachd.OptionError{Option: "MaxConnectionAge", Value: l.MaxConnectionAge, Want: "at least 1s"}
	case l.MaxConnectionAgeGrace < 0:
		return &breachd.OptionError{Option: "MaxConnectionAgeGrace", Value: l.MaxConnectionAgeGrace, Want: "0 or a positive duration"}
	case l.KeepaliveTime < time.Second:
		return &breachd.OptionError{Option: "KeepaliveTime", Value: l.KeepaliveTime, Want: "at least 1s"}
	case l.KeepaliveTimeout < time.Second:
		return &breachd.OptionError{Option: "KeepaliveTimeout", Value: l.KeepaliveTimeout, Want: "at least 1s"}
	case l.MinPingInterval <= 0:
		return &breachd.OptionError{Option: "MinPingInterval", Value: l.MinPingInterval, Want: "a positive duration"}
	}
	return nil
}

// ServerOptions returns the grpc.ServerOptions that apply l, and breachd's
// protobuf codec (grpccodec: grpc-go's, without clearing 1 MiB for each
// bulk batch).
func (l TransportLimits) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(grpccodec.Codec),
		grpc.MaxRecvMsgSize(l.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(l.MaxSendMsgSize),
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     l.MaxConnectionIdle,
			MaxConnectionAge:      l.MaxConnectionAge,
			MaxConnectionAgeGrace: l.MaxConnectionAgeGrace,
			Time:                  l.KeepaliveTime,
			Timeout:               l.KeepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             l.MinPingInterval,
			PermitWithoutStream: true,
		}),
	}
}

// Interceptors returns the first links of the daemon's chains, in order:
// recovery (go-grpc-middleware's: a panic becomes Internal, logged with its
// stack), then logging (method, code and duration of each finished call,
// never its payload; ordinary outcomes at debug level so a busy daemon stays
// quiet). The caller appends authentication, quotas and the rest after them.
//
// The logging interceptor is ours: go-grpc-middleware's builds its fields
// (peer address, formatted start time, call metadata) before it knows the
// level, 47 allocations and 2.4 KiB per call that a quiet daemon throws away
// (bench/README.md). This one checks the level first.
func Interceptors(log *slog.Logger) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	rec := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	logUnary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logCall(ctx, log, info.FullMethod, start, err)
		return resp, err
	}
	logStream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logCall(ss.Context(), log, info.FullMethod, start, err)
		return err
	}
	return []grpc.UnaryServerInterceptor{recovery.UnaryServerInterceptor(rec), logUnary},
		[]grpc.StreamServerInterceptor{recovery.StreamServerInterceptor(rec), logStream}
}

// logCall logs a finished call: method, code and duration, never its payload.
func logCall(ctx context.Context, log *slog.Logger, method string, start time.Time, err error) {
	code := status.Code(err)
	level := callLevel(code)
	if !log.Enabled(ctx, level) {
		return
	}
	log.LogAttrs(ctx, level, "call", slog.String("method", method), slog.String("code", code.String()),
		slog.Duration("duration", time.Since(start)))
}

// callLevel is the log level of a finished call with this code.
func callLevel(code codes.Code) slog.Level {
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.ResourceExhausted, codes.Unavailable:
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

// Options configure Register.
type Options struct {
	Logger *slog.Logger // nil discards
	// Admin registers the AdminService, which changes the corpus, and the
	// WatchService (watchlists and their events).
	Admin bool
	// ImportIdleTimeout ends an import stream that sends nothing for this
	// long, freeing the import lock. 0 means DefaultImportIdleTimeout.
	ImportIdleTimeout time.Duration
	// Workers is the size of the process-wide pool that answers bulk
	// batches, shared by every stream. 0 means one per core.
	Workers int
}

// DefaultImportIdleTimeout is how long an import stream may stay silent.
const DefaultImportIdleTimeout = time.Minute

// Services are breachd's services registered on a server.
type Services struct {
	health   *health.Server
	exposure *ExposureServer
	admin    bool
}

// Register registers breachd's services on gs, a server the caller built
// (with its credentials, limits and interceptors): the ExposureService, the
// AdminService if asked for, health (grpc.health.v1) and reflection. Health
// says NOT_SERVING until the caller calls Serving, once the corpus is open.
func Register(gs *grpc.Server, svc *service.Service, opts Options) *Services {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.ImportIdleTimeout <= 0 {
		opts.ImportIdleTimeout = DefaultImportIdleTimeout
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	s := &Services{health: health.NewServer(), exposure: NewExposureServer(svc, log, opts.Workers), admin: opts.Admin}
	breachdv1.RegisterExposureServiceServer(gs, s.exposure)
	breachdv1.RegisterPasswordServiceServer(gs, &PasswordServer{svc: svc, log: log})
	breachdv1.RegisterAssessServiceServer(gs, &AssessServer{exposure: s.exposure})
	healthpb.RegisterHealthServer(gs, s.health)
	if opts.Admin {
		admin := NewAdminServer(svc, log, opts.ImportIdleTimeout)
		breachdv1.RegisterAdminServiceServer(gs, admin)
		breachdv1.RegisterWatchServiceServer(gs, &WatchServer{svc: svc, streams: admin})
	}
	reflection.Register(gs)
	s.setStatus(healthpb.HealthCheckResponse_NOT_SERVING)
	return s
}

func (s *Services) setStatus(st healthpb.HealthCheckResponse_ServingStatus) {
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(breachdv1.ExposureService_ServiceDesc.ServiceName, st)
	s.health.SetServingStatus(breachdv1.PasswordService_ServiceDesc.ServiceName, st)
	if s.admin {
		s.health.SetServingStatus(breachdv1.AdminService_ServiceDesc.ServiceName, st)
		s.health.SetServingStatus(breachdv1.WatchService_ServiceDesc.ServiceName, st)
	}
}

// Serving marks every service SERVING.
func (s *Services) Serving() { s.setStatus(healthpb.HealthCheckResponse_SERVING) }

// NotServing marks every service NOT_SERVING (a replica out of date): calls
// are still answered, each with its corpus version.
func (s *Services) NotServing() { s.setStatus(healthpb.HealthCheckResponse_NOT_SERVING) }

// Shutdown marks every service NOT_SERVING, tells bulk streams to end (they
// end with UNAVAILABLE, which a resumable sweep resumes from), lets calls in
// flight finish until ctx is done, then closes whatever is left.
func (s *Services) Shutdown(ctx context.Context, gs *grpc.Server, log *slog.Logger) {
	s.health.Shutdown()
	s.exposure.drain()
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn("graceful stop timed out; closing remaining calls")
		gs.Stop()
		<-done
	}
	s.exposure.pool.stop()
}
