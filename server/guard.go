package server

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/connlimit"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/quota"
)

// methodUseCases names the use case of each method; the admission rule of
// each is auth.Policy's. A method of breachd's that is missing here is
// refused to everyone.
var methodUseCases = map[string]auth.UseCase{
	breachdv1.ExposureService_Check_FullMethodName:                auth.UseCheck,
	breachdv1.ExposureService_ListBreaches_FullMethodName:         auth.UseCatalogue,
	breachdv1.ExposureService_GetBreach_FullMethodName:            auth.UseCatalogue,
	breachdv1.ExposureService_CheckStream_FullMethodName:          auth.UseCheckBulk,
	breachdv1.ExposureService_CheckPrivate_FullMethodName:         auth.UseCheckPrivate,
	breachdv1.ExposureService_GetPrivateLookupInfo_FullMethodName: auth.UseCheckPrivate,
	breachdv1.AdminService_ImportBreach_FullMethodName:            auth.UseChangeCorpus,
	breachdv1.AdminService_DeleteBreach_FullMethodName:            auth.UseChangeCorpus,
	breachdv1.AdminService_UpdateBreach_FullMethodName:            auth.UseChangeCorpus,
	breachdv1.AdminService_ImportPasswords_FullMethodName:         auth.UseImportPasswords,
	breachdv1.AdminService_ImportPairs_FullMethodName:             auth.UseChangeCorpus,
	breachdv1.PasswordService_CheckPassword_FullMethodName:        auth.UseCheckPassword,
	breachdv1.PasswordService_Range_FullMethodName:                auth.UsePasswordRange,
	breachdv1.AssessService_Assess_FullMethodName:                 auth.UseAssess,
	breachdv1.WatchService_CreateWatchlist_FullMethodName:         auth.UseWatch,
	breachdv1.WatchService_AddToWatchlist_FullMethodName:          auth.UseWatch,
	breachdv1.WatchService_RemoveFromWatchlist_FullMethodName:     auth.UseWatch,
	breachdv1.WatchService_ListWatchlists_FullMethodName:          auth.UseWatch,
	breachdv1.WatchService_DeleteWatchlist_FullMethodName:         auth.UseWatch,
	breachdv1.WatchService_ListEvents_FullMethodName:              auth.UseWatch,
	breachdv1.WatchService_ListDeliveries_FullMethodName:          auth.UseWatch,
}

// Health needs no identity; reflection needs one but no scope.
const (
	healthPrefix     = "/grpc.health.v1.Health/"
	reflectionPrefix = "/grpc.reflection."
)

// GuardOptions configure a Guard.
type GuardOptions struct {
	Logger *slog.Logger
	// Registerer receives the guard's gauge of health watches. Nil
	// registers nothing.
	Registerer prometheus.Registerer
	// Refusals counts refused calls (shared with the HTTP face); nil: the
	// guard's own, registered with Registerer.
	Refusals *auth.Refusals
	// Reflection allows server reflection to any authenticated caller;
	// false refuses it to everyone.
	Reflection bool
	// MaxStreamWait is how long a bulk stream's batch may wait for its
	// principal's quota (pacing the stream) before it is refused with
	// RetryInfo. 0 refuses at once.
	MaxStreamWait time.Duration
	// Anonymous, if not nil, charges every call that needs no credential
	// (health) to its source address (connlimit.Source), and caps each
	// address's open Health.Watch streams at its stream cap.
	Anonymous *quota.Limiter
	// MaxWatches caps the Health.Watch streams open at once, from anyone
	// (0: no cap): each holds a goroutine and buffers until it ends.
	MaxWatches int
}

// Guard authenticates calls, checks their scope, charges their quota and
// writes the audit log. Its interceptors go after recovery, logging and
// metrics in the chain.
type Guard struct {
	authn *auth.Authenticator
	quota *quota.Limiter
	opts  GuardOptions
	log   *slog.Logger

	refusals *auth.Refusals
	watches  atomic.Int64 // Health.Watch streams open

	mu   sync.Mutex
	live map[*liveStream]struct{} // authenticated streams open: Revalidate ends a revoked principal's
}

// liveStream is an authenticated stream, ended by cancel when its
// principal no longer stands.
type liveStream struct {
	p      *auth.Principal
	cancel context.CancelCauseFunc
}

// NewGuard returns a guard over an authenticator and a limiter.
func NewGuard(a *auth.Authenticator, q *quota.Limiter, opts GuardOptions) (*Guard, error) {
	g := &Guard{authn: a, quota: q, opts: opts, log: opts.Logger, live: map[*liveStream]struct{}{}}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.refusals = opts.Refusals
	if g.refusals == nil {
		var err error
		if g.refusals, err = auth.NewRefusals(opts.Registerer); err != nil {
			return nil, err
		}
	}
	watches := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "breachd_health_watches",
		Help: "Health.Watch streams open (capped by limits.max_health_watches).",
	}, func() float64 { return float64(g.watches.Load()) })
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(watches); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Interceptors returns the guard's interceptors: go-grpc-middleware's auth
// interceptor over authenticate (which also charges a unary call's quota),
// and, for streams, the quota of each bulk batch as it arrives.
//
// Health is skipped inside authenticate rather than with the selector
// interceptor: the selector builds the call's metadata on every call, which
// cost the guarded Check a measurable share of its rate against health
// (bench/README.md).
func (g *Guard) Interceptors() ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	return []grpc.UnaryServerInterceptor{grpcauth.UnaryServerInterceptor(g.authenticate)},
		[]grpc.StreamServerInterceptor{grpcauth.StreamServerInterceptor(g.authenticate), g.streamQuota}
}

// authenticate finds the caller's principal (an API key in 'authorization:
// Bearer', else a verified client certificate), checks the method's scope,
// charges a unary call's quota, and puts the principal in the context.
// Health needs nothing. Refusals are audited.
func (g *Guard) authenticate(ctx context.Context) (context.Context, error) {
	method, _ := grpc.Method(ctx)
	if strings.HasPrefix(method, healthPrefix) {
		return ctx, nil // charged by Tap
	}
	p, err := g.identify(ctx)
	if err != nil {
		g.refuse(ctx, method, "unauthenticated", "-", err)
		return nil, toStatus(g.log, method, err)
	}
	var rule auth.Rule
	switch uc, ok := methodUseCases[method]; {
	case ok:
		if rule, err = auth.RuleFor(uc, method); err == nil {
			err = rule.Admit(p, method)
		}
	case strings.HasPrefix(method, reflectionPrefix) && g.opts.Reflection:
	case strings.HasPrefix(method, reflectionPrefix):
		err = breachd.Errorf(breachd.ErrPermissionDenied, "server reflection is switched off on this daemon")
	default:
		_, err = auth.RuleFor(uc, method)
	}
	if err != nil {
		g.refuse(ctx, method, "permission_denied", p.Name, err)
		return nil, toStatus(g.log, method, err)
	}
	if rule.Audit {
		g.log.InfoContext(ctx, "admin call", "principal", p.Name, "via", p.Via, "peer", peerAddr(ctx), "method", method)
	}
	if rule.Cost == auth.PerCall {
		if err := g.quota.Take(p.Name, limits(p), 1); err != nil {
			g.refusals.OverQuota(p.Name)
			return nil, toStatus(g.log, method, err)
		}
	}
	return auth.NewContext(ctx, p), nil
}

func (g *Guard) identify(ctx context.Context) (*auth.Principal, error) {
	if len(metadata.ValueFromIncomingContext(ctx, "authorization")) > 0 {
		key, err := grpcauth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, breachd.Errorf(breachd.ErrUnauthenticated, "the authorization header is malformed: send 'authorization: Bearer KEY'")
		}
		return g.authn.FromKey(key)
	}
	if cert := clientCert(ctx); cert != nil {
		return g.authn.FromCert(cert)
	}
	return nil, breachd.Errorf(breachd.ErrUnauthenticated,
		"no credential: send 'authorization: Bearer KEY' with a key from 'breachd keys create', or a client certificate")
}

// clientCert returns the verified client certificate of the connection, if any.
func clientCert(ctx context.Context) *x509.Certificate {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// source names the caller's source address (connlimit.Source), the key of
// its anonymous quota.
func source(ctx context.Context) string {
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		if src, ok := connlimit.Source(pr.Addr); ok {
			return src.String()
		}
		return pr.Addr.String()
	}
	return "-"
}

func peerAddr(ctx context.Context) string {
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		return pr.Addr.String()
	}
	return "-"
}

// refuse audits a refused call: never the credential itself.
func (g *Guard) refuse(ctx context.Context, method, reason, principal string, err error) {
	g.refusals.Unauthorized(reason, principal)
	g.log.WarnContext(ctx, "call refused", "reason", reason, "principal", principal, "peer", peerAddr(ctx), "method", method, "err", err)
}

func limits(p *auth.Principal) quota.Limits { return quota.Limits{Rate: p.Rate, Burst: p.Burst} }

// streamQuota caps the principal's open streams and charges each bulk
// batch its digest count as it arrives, pacing the stream to the quota
// for up to MaxStreamWait per batch.
//
// An authenticated stream ends, with UNAUTHENTICATED, when Revalidate finds
// its principal revoked. A Health.Watch stream, which needs no credential,
// is counted against MaxWatches and its address's cap.
func (g *Guard) streamQuota(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	p, ok := auth.FromContext(ss.Context())
	if !ok {
		if info.FullMethod == healthWatch {
			release, err := g.openWatch(ss.Context())
			if err != nil {
				g.refusals.OverQuota("-")
				return toStatus(g.log, info.FullMethod, err)
			}
			defer release()
		}
		return handler(srv, ss)
	}
	release, err := g.quota.OpenStream(p.Name)
	if err != nil {
		g.refusals.OverQuota(p.Name)
		return toStatus(g.log, info.FullMethod, err)
	}
	defer release()
	ctx, cancel := context.WithCancelCause(ss.Context())
	defer cancel(nil)
	if info.FullMethod == breachdv1.ExposureService_CheckStream_FullMethodName {
		ctx = withBatchLimit(ctx, g.quota.MaxCost(limits(p), g.opts.MaxStreamWait))
	}
	ls := &liveStream{p: p, cancel: cancel}
	g.mu.Lock()
	g.live[ls] = struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.live, ls)
		g.mu.Unlock()
	}()
	err = handler(srv, &chargedStream{ServerStream: ss, ctx: ctx, g: g, p: p, method: info.FullMethod})
	if cause := context.Cause(ctx); errors.Is(cause, errRevoked) {
		g.refuse(ctx, info.FullMethod, "revoked", p.Name, cause)
		return toStatus(g.log, info.FullMethod, cause)
	}
	return err
}

const healthWatch = healthPrefix + "Watch"

// Tap runs on a connection's reader as each stream arrives, before the
// server gives it a goroutine and buffers (grpc.InTapHandle). It charges
// the health calls, which need no credential, to their address's bucket,
// and refuses a Health.Watch over the caps there: a flood of them from
// one address then costs the daemon a header and a reset each, not a
// goroutine and its stack (the probe's 40,000 refused watches raised RSS
// 150 MB when they were refused in the interceptor). openWatch still
// counts the streams it admits.
func (g *Guard) Tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if !strings.HasPrefix(info.FullMethodName, healthPrefix) {
		return ctx, nil
	}
	src := source(ctx)
	var err error
	switch {
	case info.FullMethodName == healthWatch && g.opts.MaxWatches > 0 && g.watches.Load() >= int64(g.opts.MaxWatches):
		err = g.watchesFull()
	case g.opts.Anonymous == nil:
	default:
		if info.FullMethodName == healthWatch {
			err = g.opts.Anonymous.CanOpenStream(src)
		}
		if err == nil {
			err = g.opts.Anonymous.Take(src, quota.Limits{}, 1)
		}
	}
	if err != nil {
		g.refusals.OverQuota("-")
		return nil, toStatus(g.log, info.FullMethodName, err)
	}
	return ctx, nil
}

func (g *Guard) watchesFull() error {
	return breachd.Errorf(breachd.ErrQuotaExceeded,
		"the daemon already serves %d health watches, the most it allows: use Health.Check, or retry later", g.opts.MaxWatches)
}

// openWatch counts a Health.Watch stream in the daemon's cap and its
// address's, or refuses it.
func (g *Guard) openWatch(ctx context.Context) (release func(), err error) {
	if g.opts.MaxWatches > 0 && g.watches.Add(1) > int64(g.opts.MaxWatches) {
		g.watches.Add(-1)
		return nil, g.watchesFull()
	} else if g.opts.MaxWatches <= 0 {
		g.watches.Add(1)
	}
	done := func() { g.watches.Add(-1) }
	if g.opts.Anonymous == nil {
		return done, nil
	}
	rel, err := g.opts.Anonymous.OpenStream(source(ctx))
	if err != nil {
		done()
		return nil, err
	}
	return func() { rel(); done() }, nil
}

// errRevoked is the cause that ends a stream whose credential went away.
var errRevoked = breachd.NewError(breachd.ErrUnauthenticated,
	"the credential this stream was opened with was revoked (or its scopes changed): the stream was ended; open a new one with a valid key")

// Revalidate ends every open stream whose principal no longer stands
// (auth.Authenticator.Valid): a revoked key's bulk sweeps and imports stop
// within the key file's reload interval. The daemon calls it after each
// reload of the keys.
func (g *Guard) Revalidate() {
	g.mu.Lock()
	var ended []*liveStream
	for ls := range g.live {
		if !g.authn.Valid(ls.p) {
			ended = append(ended, ls)
		}
	}
	g.mu.Unlock()
	for _, ls := range ended {
		ls.cancel(errRevoked)
	}
}

// chargedStream charges the quota for each bulk batch it receives, and
// carries the stream's context, which Revalidate can end.
type chargedStream struct {
	grpc.ServerStream
	ctx    context.Context
	g      *Guard
	p      *auth.Principal
	method string
}

func (s *chargedStream) Context() context.Context { return s.ctx }

func (s *chargedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	req, ok := m.(*breachdv1.CheckStreamRequest)
	if !ok {
		return nil
	}
	// A batch is charged its digests only once its shape is valid: one the
	// handler refuses (too large, a torn digest) costs a call, never a wait
	// for tokens it would not use.
	cost := 1
	if breachd.ValidateBatch(req.GetEmailSha256()) == nil {
		cost = len(req.GetEmailSha256()) / breachd.DigestSize
	}
	if err := s.g.quota.Wait(s.Context(), s.p.Name, limits(s.p), cost, s.g.opts.MaxStreamWait); err != nil {
		s.g.refusals.OverQuota(s.p.Name)
		return toStatus(s.g.log, s.method, err)
	}
	return nil
}
