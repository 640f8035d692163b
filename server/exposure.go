package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/store"
)

// Corpus is what the exposure service needs from the store.
type Corpus interface {
	Lookup(ctx context.Context, d breachd.Digest) ([]*store.Breach, uint64, error)
	LookupBatch(ctx context.Context, packed []byte, hit func(i int, breaches []*store.Breach)) (uint64, error)
	Breaches() ([]*store.Breach, uint64)
	Breach(name string) (*store.Breach, uint64, error)
}

// Exposure implements breachdv1.ExposureServiceServer.
type Exposure struct {
	breachdv1.UnimplementedExposureServiceServer
	corpus Corpus
	log    *slog.Logger

	// summaries caches the answer form of each catalogue entry. Entries are
	// immutable and replaced (not changed) on import, so the pointer is the key.
	summaries sync.Map // *store.Breach -> *breachdv1.BreachSummary
}

var _ breachdv1.ExposureServiceServer = (*Exposure)(nil)

// NewExposure returns the exposure service over corpus.
func NewExposure(corpus Corpus, log *slog.Logger) *Exposure {
	return &Exposure{corpus: corpus, log: log}
}

// Check answers for one digest.
func (s *Exposure) Check(ctx context.Context, req *breachdv1.CheckRequest) (*breachdv1.CheckResponse, error) {
	d, err := validateCheck(req)
	if err != nil {
		return nil, err
	}
	bs, version, err := s.corpus.Lookup(ctx, d)
	if err != nil {
		return nil, toStatus(s.log, "Check", err)
	}
	resp := &breachdv1.CheckResponse{Exposed: len(bs) > 0, CorpusVersion: version}
	if len(bs) > 0 {
		resp.Breaches = make([]*breachdv1.BreachSummary, len(bs))
		for i, b := range bs {
			resp.Breaches[i] = s.summary(b)
		}
	}
	return resp, nil
}

func (s *Exposure) summary(b *store.Breach) *breachdv1.BreachSummary {
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
		err    error // validation error: ends the stream when its turn comes
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
					j := &job{err: err}
					select {
					case order <- j:
					case <-ctx.Done():
					}
				}
				return
			}
			j := &job{packed: req.GetEmailSha256(), out: make(chan *breachdv1.CheckStreamResponse, 1), outErr: make(chan error, 1)}
			j.err = validateBatch("CheckStreamRequest", j.packed)
			select {
			case order <- j:
			case <-ctx.Done():
				return
			}
			if j.err != nil {
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
			return j.err
		}
		select {
		case resp := <-j.out:
			if err := stream.Send(resp); err != nil {
				return err
			}
		case err := <-j.outErr:
			return toStatus(s.log, "CheckStream", err)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return nil
}

// answer looks up one validated batch.
func (s *Exposure) answer(ctx context.Context, packed []byte) (*breachdv1.CheckStreamResponse, error) {
	resp := &breachdv1.CheckStreamResponse{Count: uint32(len(packed) / breachd.DigestSize)}
	var sets [][]*store.Breach // distinct breach sets in this batch; few
	version, err := s.corpus.LookupBatch(ctx, packed, func(i int, bs []*store.Breach) {
		set := slices.IndexFunc(sets, func(x []*store.Breach) bool { return slices.Equal(x, bs) })
		if set < 0 {
			set = len(sets)
			sets = append(sets, slices.Clone(bs))
			names := make([]string, len(bs))
			for j, b := range bs {
				names[j] = b.Name
			}
			resp.BreachSets = append(resp.BreachSets, &breachdv1.BreachSet{Names: names})
		}
		resp.ExposedIndex = append(resp.ExposedIndex, uint32(i))
		resp.BreachSet = append(resp.BreachSet, uint32(set))
	})
	if err != nil {
		return nil, err
	}
	resp.CorpusVersion = version
	return resp, nil
}

// ListBreaches returns the catalogue.
func (s *Exposure) ListBreaches(ctx context.Context, _ *breachdv1.ListBreachesRequest) (*breachdv1.ListBreachesResponse, error) {
	bs, version := s.corpus.Breaches()
	resp := &breachdv1.ListBreachesResponse{CorpusVersion: version, Breaches: make([]*breachdv1.Breach, len(bs))}
	for i, b := range bs {
		resp.Breaches[i] = breachToProto(b)
	}
	return resp, nil
}

// GetBreach returns one breach.
func (s *Exposure) GetBreach(ctx context.Context, req *breachdv1.GetBreachRequest) (*breachdv1.GetBreachResponse, error) {
	if err := validateGetBreach(req); err != nil {
		return nil, err
	}
	b, version, err := s.corpus.Breach(req.GetName())
	if err != nil {
		return nil, toStatus(s.log, "GetBreach", err)
	}
	return &breachdv1.GetBreachResponse{Breach: breachToProto(b), CorpusVersion: version}, nil
}

func breachToProto(b *store.Breach) *breachdv1.Breach {
	p := BreachToProto(&b.Breach)
	p.AccountCount = b.AccountCount
	return p
}

// BreachToProto converts a breach record to its wire form (without the
// account count, which only the store knows).
func BreachToProto(b *breachd.Breach) *breachdv1.Breach {
	p := &breachdv1.Breach{
		Name: b.Name, Title: b.Title, Domain: b.Domain, BreachDate: b.BreachDate,
		PwnCount: b.PwnCount, Description: b.Description, DataClasses: b.DataClasses,
		IsVerified: b.IsVerified, IsSensitive: b.IsSensitive,
	}
	if !b.AddedDate.IsZero() {
		p.AddedDate = timestamppb.New(b.AddedDate)
	}
	return p
}
