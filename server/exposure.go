package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"sync"

	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/service"
)

// Exposure implements breachdv1.ExposureServiceServer over the use cases.
type Exposure struct {
	breachdv1.UnimplementedExposureServiceServer
	svc *service.Service
	log *slog.Logger

	// summaries caches the answer form of each catalogue entry. Entries are
	// immutable and replaced (not changed) on import, so the pointer is the key.
	summaries sync.Map // *breachd.CatalogEntry -> *breachdv1.BreachSummary
}

var _ breachdv1.ExposureServiceServer = (*Exposure)(nil)

// NewExposure returns the exposure service over svc.
func NewExposure(svc *service.Service, log *slog.Logger) *Exposure {
	return &Exposure{svc: svc, log: log}
}

// Check answers for one digest.
func (s *Exposure) Check(ctx context.Context, req *breachdv1.CheckRequest) (*breachdv1.CheckResponse, error) {
	d, err := digestFromCheck(req)
	if err != nil {
		return nil, toStatus(s.log, "Check", err)
	}
	e, err := s.svc.Check(ctx, d)
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

func (s *Exposure) summary(b *breachd.CatalogEntry) *breachdv1.BreachSummary {
	if v, ok := s.summaries.Load(b); ok {
		return v.(*breachdv1.BreachSummary)
	}
	sum := &breachdv1.BreachSummary{Name: b.Name, Title: b.Title, BreachDate: b.BreachDate, DataClasses: b.DataClasses}
	v, _ := s.summaries.LoadOrStore(b, sum)
	return v.(*breachdv1.BreachSummary)
}

// CheckStream answers each batch of digests, in order, with one response.
// Batches that arrive while others are being answered are looked up in
// parallel (one worker per core), so a client with several batches in flight
// keeps every core busy; answers still leave in arrival order.
func (s *Exposure) CheckStream(stream breachdv1.ExposureService_CheckStreamServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	type job struct {
		packed []byte
		err    error // a receive error: ends the stream when its turn comes
		out    chan *breachdv1.CheckStreamResponse
		outErr chan error
	}
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan *job, workers)
	order := make(chan *job, 2*workers)
	// The receiver ends when the client closes its side, or when the stream
	// ends (this handler returns).
	go func() {
		defer close(jobs)
		defer close(order)
		for {
			req := new(breachdv1.CheckStreamRequest)
			if err := stream.RecvMsg(req); err != nil {
				if !errors.Is(err, io.EOF) {
					select {
					case order <- &job{err: err}:
					case <-ctx.Done():
					}
				}
				return
			}
			j := &job{packed: req.GetEmailSha256(), out: make(chan *breachdv1.CheckStreamResponse, 1), outErr: make(chan error, 1)}
			select {
			case order <- j:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs first: unblocks the workers
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var j *job
				select {
				case j = <-jobs:
				case <-ctx.Done(): // the handler returned; the receiver may still be blocked
					return
				}
				if j == nil {
					return
				}
				resp, err := s.answer(ctx, j.packed)
				if err != nil {
					j.outErr <- err
				} else {
					j.out <- resp
				}
			}
		}()
	}
	for j := range order {
		if j.err != nil {
			return toStatus(s.log, "CheckStream", j.err)
		}
		select {
		case resp := <-j.out:
			if err := stream.Send(resp); err != nil {
				return toStatus(s.log, "CheckStream", err)
			}
		case err := <-j.outErr:
			return toStatus(s.log, "CheckStream", err)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return nil
}

// answer checks one batch and packs the answer.
func (s *Exposure) answer(ctx context.Context, packed []byte) (*breachdv1.CheckStreamResponse, error) {
	e, err := s.svc.CheckBatch(ctx, packed)
	if err != nil {
		return nil, inField("CheckStreamRequest.email_sha256", err)
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
func (s *Exposure) ListBreaches(ctx context.Context, req *breachdv1.ListBreachesRequest) (*breachdv1.ListBreachesResponse, error) {
	page, err := s.svc.ListBreaches(ctx, service.PageRequest{Size: int(req.GetPageSize()), Token: req.GetPageToken()})
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
func (s *Exposure) GetBreach(ctx context.Context, req *breachdv1.GetBreachRequest) (*breachdv1.GetBreachResponse, error) {
	b, version, err := s.svc.GetBreach(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(s.log, "GetBreach", inMessage("GetBreachRequest", err))
	}
	return &breachdv1.GetBreachResponse{Breach: breachdv1.EntryFromDomain(b), CorpusVersion: version}, nil
}
