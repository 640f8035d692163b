package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// MaxBatch is the most digests the server accepts in one stream message.
const MaxBatch = 10_000

// Breach is a breach an account appears in.
type Breach struct {
	Name        string
	Title       string
	BreachDate  string // YYYY-MM-DD
	DataClasses []string
}

// Result is the answer for one account.
type Result struct {
	Exposed  bool
	Breaches []Breach // ordered by name; empty when not exposed
	// CorpusVersion identifies the corpus the answer was computed against.
	CorpusVersion uint64
}

// Error wraps a failed call's gRPC status; errors.As finds it and
// status.FromError still works on it.
type Error struct {
	Op  string
	err error
}

func (e *Error) Error() string { return "breachd " + e.Op + ": " + status.Convert(e.err).Message() }

// Unwrap returns the gRPC status error.
func (e *Error) Unwrap() error { return e.err }

// GRPCStatus lets status.FromError and status.Code see through the wrapper.
func (e *Error) GRPCStatus() *status.Status { return status.Convert(e.err) }

// Client calls a breachd daemon. It is safe for concurrent use.
type Client struct {
	expo breachdv1.ExposureServiceClient
	opts options
}

type options struct {
	batch    int
	inFlight int
	retries  int
	backoff  time.Duration
}

// Option configures a Client.
type Option func(*options)

// WithBatchSize sets how many digests the bulk call packs per message
// (1 to MaxBatch; default 2,000).
func WithBatchSize(n int) Option { return func(o *options) { o.batch = max(1, min(n, MaxBatch)) } }

// WithInFlight sets how many bulk batches may await an answer at once
// (default 4): enough to keep both ends busy, bounded so memory is too.
func WithInFlight(n int) Option { return func(o *options) { o.inFlight = max(1, n) } }

// WithRetries sets how often a unary call that failed with UNAVAILABLE is
// retried, with exponential backoff from base (default 3 retries from 100ms).
// Lookups are read-only, so a retry is always safe.
func WithRetries(n int, base time.Duration) Option {
	return func(o *options) { o.retries, o.backoff = max(0, n), base }
}

// New returns a client over conn (typically a *grpc.ClientConn from grpc.NewClient).
func New(conn grpc.ClientConnInterface, opts ...Option) *Client {
	o := options{batch: 2000, inFlight: 4, retries: 3, backoff: 100 * time.Millisecond}
	for _, opt := range opts {
		opt(&o)
	}
	return &Client{expo: breachdv1.NewExposureServiceClient(conn), opts: o}
}

// Check canonicalises and hashes email locally and asks whether it is
// exposed. An invalid address returns an error wrapping canon.ErrInvalidEmail
// without calling the server.
func (c *Client) Check(ctx context.Context, email string) (Result, error) {
	d, err := canon.Digest(email)
	if err != nil {
		return Result{}, err
	}
	return c.CheckDigest(ctx, d)
}

// CheckDigest asks whether the account with digest d is exposed.
func (c *Client) CheckDigest(ctx context.Context, d breachd.Digest) (Result, error) {
	var resp *breachdv1.CheckResponse
	err := c.retry(ctx, "Check", func() error {
		var err error
		resp, err = c.expo.Check(ctx, &breachdv1.CheckRequest{EmailSha256: d[:]})
		return err
	})
	if err != nil {
		return Result{}, err
	}
	r := Result{Exposed: resp.GetExposed(), CorpusVersion: resp.GetCorpusVersion()}
	for _, b := range resp.GetBreaches() {
		r.Breaches = append(r.Breaches, Breach{Name: b.GetName(), Title: b.GetTitle(), BreachDate: b.GetBreachDate(), DataClasses: b.GetDataClasses()})
	}
	return r, nil
}

// CatalogEntry is a breach in the daemon's catalogue.
type CatalogEntry struct {
	Breach
	Domain       string
	PwnCount     int64
	AccountCount int64
	Description  string
	IsVerified   bool
	IsSensitive  bool
}

// Breaches returns the daemon's catalogue, ordered by name, and its version.
func (c *Client) Breaches(ctx context.Context) ([]CatalogEntry, uint64, error) {
	var resp *breachdv1.ListBreachesResponse
	err := c.retry(ctx, "ListBreaches", func() error {
		var err error
		resp, err = c.expo.ListBreaches(ctx, &breachdv1.ListBreachesRequest{})
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	out := make([]CatalogEntry, 0, len(resp.GetBreaches()))
	for _, b := range resp.GetBreaches() {
		out = append(out, CatalogEntry{
			Breach: Breach{Name: b.GetName(), Title: b.GetTitle(), BreachDate: b.GetBreachDate(), DataClasses: b.GetDataClasses()},
			Domain: b.GetDomain(), PwnCount: b.GetPwnCount(), AccountCount: b.GetAccountCount(),
			Description: b.GetDescription(), IsVerified: b.GetIsVerified(), IsSensitive: b.GetIsSensitive(),
		})
	}
	return out, resp.GetCorpusVersion(), nil
}

// retry runs call, retrying UNAVAILABLE with exponential backoff while ctx allows.
func (c *Client) retry(ctx context.Context, op string, call func() error) error {
	wait := c.opts.backoff
	for attempt := 0; ; attempt++ {
		err := call()
		if err == nil {
			return nil
		}
		if status.Code(err) != codes.Unavailable || attempt >= c.opts.retries {
			return &Error{Op: op, err: err}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return &Error{Op: op, err: status.FromContextError(ctx.Err()).Err()}
		case <-t.C:
		}
		wait *= 2
	}
}

// BulkResult is the answer for one digest of a bulk call.
type BulkResult struct {
	Index         int64    // position in the input, from 0
	Exposed       bool     // whether the account is in the corpus
	BreachNames   []string // ordered by name; details from Breaches
	CorpusVersion uint64
}

// CheckDigests checks a sequence of digests over one stream and yields an
// answer for each, in input order. It packs digests into batches and keeps a
// bounded number of batches in flight, so neither end waits for the other.
// Stopping the iteration early cancels the stream. A failure is yielded once,
// as the last pair, after every answer that arrived before it; streams are
// not retried (callers that need to survive a lost connection resume from
// the last index they received).
func (c *Client) CheckDigests(ctx context.Context, digests iter.Seq[breachd.Digest]) iter.Seq2[BulkResult, error] {
	return func(yield func(BulkResult, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.expo.CheckStream(ctx)
		if err != nil {
			yield(BulkResult{}, &Error{Op: "CheckStream", err: err})
			return
		}
		// sizes carries each sent batch's size to the receiver; its capacity
		// bounds the batches in flight.
		sizes := make(chan int, c.opts.inFlight)
		sendErr := make(chan error, 1)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(sizes)
			sendErr <- c.send(ctx, stream, digests, sizes)
		}()
		defer wg.Wait()

		var base int64
		for n := range sizes {
			resp, err := stream.Recv()
			if err != nil {
				cancel()
				yield(BulkResult{}, &Error{Op: "CheckStream", err: err})
				return
			}
			if int(resp.GetCount()) != n {
				cancel()
				yield(BulkResult{}, fmt.Errorf("breachd CheckStream: answer for %d digests, sent %d", resp.GetCount(), n))
				return
			}
			idx, set, sets := resp.GetExposedIndex(), resp.GetBreachSet(), resp.GetBreachSets()
			if len(idx) != len(set) {
				cancel()
				yield(BulkResult{}, fmt.Errorf("breachd CheckStream: %d exposed positions but %d breach sets", len(idx), len(set)))
				return
			}
			for i := 0; i < n; i++ {
				r := BulkResult{Index: base + int64(i), CorpusVersion: resp.GetCorpusVersion()}
				if len(idx) > 0 && int(idx[0]) == i {
					if int(set[0]) >= len(sets) {
						cancel()
						yield(BulkResult{}, fmt.Errorf("breachd CheckStream: breach set %d of %d", set[0], len(sets)))
						return
					}
					r.Exposed, r.BreachNames = true, sets[set[0]].GetNames()
					idx, set = idx[1:], set[1:]
				}
				if !yield(r, nil) {
					cancel()
					return
				}
			}
			base += int64(n)
		}
		if err := <-sendErr; err != nil && !errors.Is(err, context.Canceled) {
			yield(BulkResult{}, err)
		}
	}
}

// send packs digests into batches and sends them, announcing each batch's
// size on sizes before it goes out.
func (c *Client) send(ctx context.Context, stream grpc.BidiStreamingClient[breachdv1.CheckStreamRequest, breachdv1.CheckStreamResponse],
	digests iter.Seq[breachd.Digest], sizes chan<- int) error {
	packed := make([]byte, 0, c.opts.batch*breachd.DigestSize)
	flush := func() error {
		select {
		case sizes <- len(packed) / breachd.DigestSize:
		case <-ctx.Done():
			return ctx.Err()
		}
		// The message owns its slice until Send returns; a new one is cheaper
		// than a copy and keeps batches independent.
		err := stream.Send(&breachdv1.CheckStreamRequest{EmailSha256: packed})
		packed = make([]byte, 0, c.opts.batch*breachd.DigestSize)
		return err
	}
	for d := range digests {
		packed = append(packed, d[:]...)
		if len(packed) == cap(packed) {
			if err := flush(); err != nil {
				return nil // the receiver reports the stream's status
			}
		}
	}
	if len(packed) > 0 {
		if err := flush(); err != nil {
			return nil
		}
	}
	return stream.CloseSend()
}
