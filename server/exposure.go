package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/service"
)

// ExposureServer implements breachdv1.ExposureServiceServer over the use cases.
type ExposureServer struct {
	breachdv1.UnimplementedExposureServiceServer
	svc  *service.Service
	log  *slog.Logger
	pool *pool // answers the batches of every bulk stream

	draining  chan struct{} // closed when shutdown starts: bulk streams end
	drainOnce sync.Once

	// summaries caches the answer form of each catalogue entry. Entries are
	// immutable and replaced (not changed) on import, so the pointer is the
	// key. Replaced entries are never looked up again: past maxSummaries
	// the cache starts afresh, so that a daemon taking imports for months
	// does not keep every entry it ever answered with.
	summaries sync.Map // *breachd.CatalogEntry -> *breachdv1.BreachSummary
	cached    atomic.Int64
}

// maxSummaries bounds the summary cache: about 16 times Have I Been Pwned's
// whole catalogue, a few MB.
const maxSummaries = 16384

var _ breachdv1.ExposureServiceServer = (*ExposureServer)(nil)

// NewExposure returns the exposure service over svc, answering bulk
// batches on a pool of workers goroutines.
func NewExposureServer(svc *service.Service, log *slog.Logger, workers int) *ExposureServer {
	return &ExposureServer{svc: svc, log: log, pool: newPool(workers), draining: make(chan struct{})}
}

// drain tells every bulk stream to end.
func (s *ExposureServer) drain() { s.drainOnce.Do(func() { close(s.draining) }) }

// Check answers for one digest.
func (s *ExposureServer) Check(ctx context.Context, req *breachdv1.CheckRequest) (*breachdv1.CheckResponse, error) {
	d, err := digestFromCheck(req)
	if err != nil {
		return nil, toStatus(s.log, "Check", err)
	}
	e, err := s.svc.Check(ctx, d)
	if err == nil {
		err = service.AtLeast(e.CorpusVersion, req.GetMinCorpusVersion())
	}
	if err != nil {
		return nil, toStatus(s.log, "Check", err)
	}
	resp := &breachdv1.CheckResponse{Exposed: e.Exposed(), CorpusVersion: e.CorpusVersion}
	if e.Exposed() {
		resp.Breaches = make([]*breachdv1.BreachSummary, len(e.Breaches))
		for i, b := range e.Breaches {
			resp.Breaches[i] = s.summary(b)
		}
	}
	return resp, nil
}

func (s *ExposureServer) summary(b *breachd.CatalogEntry) *breachdv1.BreachSummary {
	if v, ok := s.summaries.Load(b); ok {
		return v.(*breachdv1.BreachSummary)
	}
	sum := &breachdv1.BreachSummary{Name: b.Name, Title: b.Title, BreachDate: b.BreachDate, DataClasses: b.DataClasses}
	if s.cached.Add(1) > maxSummaries {
		s.summaries.Clear()
		s.cached.Store(1)
	}
	v, _ := s.summaries.LoadOrStore(b, sum)
	return v.(*breachdv1.BreachSummary)
}

// CheckStream answers each batch of digests, in order, with one response.
// Batches that arrive while others are being answered are looked up in
// parallel on the process-wide pool, so a client with several batches in
// flight keeps the cores busy; answers still leave in arrival order. The
// receiver waits for a free worker, so no stream queues more than a few
// batches. When the server starts shutting down the stream ends with
// UNAVAILABLE after the answers already sent.
func (s *ExposureServer) CheckStream(stream breachdv1.ExposureService_CheckStreamServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	// The batch limit goes out at once, before any answer: a client learns
	// it while its first batches are on their way.
	if err := stream.SendHeader(metadata.Pairs(breachd.BatchLimitHeader, strconv.Itoa(batchLimit(ctx)))); err != nil {
		return toStatus(s.log, "CheckStream", err)
	}
	type job struct {
		err  error // a receive error: ends the stream when its turn comes
		resp *breachdv1.CheckStreamResponse
		done chan struct{} // closed when resp or err is set
	}
	order := make(chan *job, 2*s.pool.size) // answers awaited, in order
	go func() {
		defer close(order)
		for {
			req := new(breachdv1.CheckStreamRequest)
			if err := stream.RecvMsg(req); err != nil {
				if !errors.Is(err, io.EOF) {
					j := &job{err: err, done: make(chan struct{})}
					close(j.done)
					select {
					case order <- j:
					case <-ctx.Done():
					}
				}
				return
			}
			j := &job{done: make(chan struct{})}
			select {
			case order <- j:
			case <-ctx.Done():
				return
			}
			if !s.pool.run(ctx.Done(), func() {
				defer close(j.done)
				j.resp, j.err = s.answer(ctx, req.GetEmailSha256(), req.GetMinCorpusVersion())
			}) {
				return
			}
		}
	}()
	batches := 0
	for {
		var j *job
		select {
		case next, ok := <-order:
			if !ok {
				return nil
			}
			j = next
		case <-s.draining: // also while the client sends nothing
			return s.drained(batches)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		select {
		case <-j.done:
		case <-s.draining:
			return s.drained(batches)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		if j.err != nil {
			return toStatus(s.log, "CheckStream", j.err)
		}
		if err := stream.Send(j.resp); err != nil {
			return toStatus(s.log, "CheckStream", err)
		}
		batches++
	}
}

type batchLimitKey struct{}

// withBatchLimit records in ctx that a bulk stream's batches should carry
// at most n digests (the caller's quota: Guard).
func withBatchLimit(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, batchLimitKey{}, n)
}

// batchLimit is the most digests a batch of the stream with ctx should
// carry: breachd.MaxBatch, or the caller's quota's bound if less. Clients
// learn it from the stream's header (breachd.BatchLimitHeader).
func batchLimit(ctx context.Context) int {
	n, ok := ctx.Value(batchLimitKey{}).(int)
	if !ok {
		return breachd.MaxBatch
	}
	return max(1, min(n, breachd.MaxBatch))
}

func (s *ExposureServer) drained(batches int) error {
	return status.Errorf(codes.Unavailable, "the server is shutting down: the stream ended after %d answered batches; "+
		"resume against another instance or later (breachctl check --resume continues where it stopped)", batches)
}

// answer checks one batch and packs the answer.
func (s *ExposureServer) answer(ctx context.Context, packed []byte, min uint64) (*breachdv1.CheckStreamResponse, error) {
	e, err := s.svc.CheckBatch(ctx, packed)
	if err != nil {
		return nil, inField("CheckStreamRequest.email_sha256", err)
	}
	if err := service.AtLeast(e.CorpusVersion, min); err != nil {
		return nil, err
	}
	resp := &breachdv1.CheckStreamResponse{Count: uint32(e.Count), ExposedIndex: e.Exposed, BreachSet: e.SetOf, CorpusVersion: e.CorpusVersion}
	for _, set := range e.Sets {
		names := make([]string, len(set))
		for i, b := range set {
			names[i] = b.Name
		}
		resp.BreachSets = append(resp.BreachSets, &breachdv1.BreachSet{Names: names})
	}
	return resp, nil
}

// ListBreaches returns a page of the catalogue.
func (s *ExposureServer) ListBreaches(ctx context.Context, req *breachdv1.ListBreachesRequest) (*breachdv1.ListBreachesResponse, error) {
	k, err := optionalKind("ListBreachesRequest", req.GetKind())
	if err != nil {
		return nil, toStatus(s.log, "ListBreaches", err)
	}
	page, err := s.svc.ListBreaches(ctx, service.PageRequest{Size: int(req.GetPageSize()), Token: req.GetPageToken(), Kind: k})
	if err == nil {
		err = service.AtLeast(page.CorpusVersion, req.GetMinCorpusVersion())
	}
	if err != nil {
		return nil, toStatus(s.log, "ListBreaches", inMessage("ListBreachesRequest", err))
	}
	resp := &breachdv1.ListBreachesResponse{CorpusVersion: page.CorpusVersion, NextPageToken: page.NextToken,
		Breaches: make([]*breachdv1.Breach, len(page.Breaches))}
	for i, b := range page.Breaches {
		resp.Breaches[i] = breachdv1.EntryFromDomain(b)
	}
	return resp, nil
}

// GetBreach returns one breach.
func (s *ExposureServer) GetBreach(ctx context.Context, req *breachdv1.GetBreachRequest) (*breachdv1.GetBreachResponse, error) {
	b, version, err := s.svc.GetBreach(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(s.log, "GetBreach", inMessage("GetBreachRequest", err))
	}
	return &breachdv1.GetBreachResponse{Breach: breachdv1.EntryFromDomain(b), CorpusVersion: version}, nil
}
