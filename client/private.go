package client

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/blind"
	"github.com/breachd/breachd/canon"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// CheckPrivate canonicalises and hashes email locally and asks whether it
// is exposed with a private check (docs/PRIVATE-LOOKUP.md): the daemon
// learns only a short prefix of the digest, shared with at least its bucket
// minimum of accounts, and answers every exposed account of that bucket
// under its key; the match is made here. The answer is the one Check gives.
func (c *Client) CheckPrivate(ctx context.Context, email string) (Result, error) {
	d, err := canon.Digest(email)
	if err != nil {
		return Result{}, err
	}
	return c.CheckPrivateDigest(ctx, d)
}

// PrivateInfo asks the daemon for its private checks' prefix length now.
func (c *Client) PrivateInfo(ctx context.Context) (*breachdv1.PrivateLookupInfo, error) {
	var info *breachdv1.PrivateLookupInfo
	err := c.retry(ctx, "GetPrivateLookupInfo", func() error {
		var err error
		info, err = c.expo.GetPrivateLookupInfo(ctx, &breachdv1.GetPrivateLookupInfoRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	if info.GetSuite() != breachd.PrivateSuite || info.GetValueSize() != breachd.PrivateValueSize || info.GetPrefixBits() > breachd.MaxPrefixBits {
		return nil, fmt.Errorf("the daemon's private lookups are %q with %d-byte values at %d bits: this client speaks %q with %d-byte values",
			info.GetSuite(), info.GetValueSize(), info.GetPrefixBits(), breachd.PrivateSuite, breachd.PrivateValueSize)
	}
	c.prefixBits.Store(int32(info.GetPrefixBits()) + 1)
	return info, nil
}

// CheckPrivateDigest is CheckPrivate for a digest.
func (c *Client) CheckPrivateDigest(ctx context.Context, d breachd.Digest) (Result, error) {
	for refreshed := false; ; refreshed = true {
		bits := int(c.prefixBits.Load()) - 1
		if bits < 0 {
			if _, err := c.PrivateInfo(ctx); err != nil {
				return Result{}, err
			}
			refreshed = true
			bits = int(c.prefixBits.Load()) - 1
		}
		r, err := blind.New(d, bits)
		if err != nil {
			return Result{}, err
		}
		var resp *breachdv1.CheckPrivateResponse
		err = c.retry(ctx, "CheckPrivate", func() error {
			var err error
			resp, err = c.expo.CheckPrivate(ctx, &breachdv1.CheckPrivateRequest{Prefix: r.Query.Prefix, PrefixBits: uint32(bits), BlindedElement: r.Query.Blinded,
				MinCorpusVersion: minVersion(ctx)})
			if err == nil {
				err = behind(ctx, resp.GetCorpusVersion())
			}
			return err
		})
		if status.Code(err) == codes.FailedPrecondition && !refreshed {
			c.prefixBits.Store(0) // the prefix length changed: ask again, once
			continue
		}
		if err != nil {
			return Result{}, err
		}
		if int(resp.GetPrefixBits()) != bits {
			c.prefixBits.Store(int32(min(resp.GetPrefixBits(), breachd.MaxPrefixBits)) + 1) // for the next check
		}
		a, err := privateAnswer(resp)
		if err != nil {
			return Result{}, err
		}
		bs, err := r.Match(a)
		if err != nil {
			return Result{}, err
		}
		res := Result{Exposed: len(bs) > 0, CorpusVersion: a.CorpusVersion}
		for _, b := range bs {
			res.Breaches = append(res.Breaches, BreachSummary{Name: b.Name, Title: b.Title, BreachDate: b.BreachDate, DataClasses: b.DataClasses})
		}
		return res, nil
	}
}

// privateAnswer checks a daemon's answer and reads it.
func privateAnswer(resp *breachdv1.CheckPrivateResponse) (breachd.PrivateAnswer, error) {
	a := breachd.PrivateAnswer{Evaluated: resp.GetEvaluatedElement(), PrefixBits: int(resp.GetPrefixBits()), CorpusVersion: resp.GetCorpusVersion()}
	bs := make([]*breachd.CatalogEntry, len(resp.GetBreaches()))
	for i, b := range resp.GetBreaches() {
		bs[i] = &breachd.CatalogEntry{Breach: breachd.Breach{Name: b.GetName(), Title: b.GetTitle(), BreachDate: b.GetBreachDate(), DataClasses: b.GetDataClasses()}}
	}
	a.Entries = make([]breachd.PrivateEntry, len(resp.GetEntries()))
	for i, e := range resp.GetEntries() {
		if len(e.GetValue()) != breachd.PrivateValueSize || i > 0 && bytes.Compare(a.Entries[i-1].Value[:], e.GetValue()) >= 0 {
			return a, fmt.Errorf("CheckPrivate: the daemon's answer has an entry of %d bytes or out of order", len(e.GetValue()))
		}
		copy(a.Entries[i].Value[:], e.GetValue())
		for _, j := range e.GetBreaches() {
			if int(j) >= len(bs) {
				return a, fmt.Errorf("CheckPrivate: the daemon's answer names breach %d of %d", j, len(bs))
			}
			a.Entries[i].Breaches = append(a.Entries[i].Breaches, bs[j])
		}
	}
	return a, nil
}

// CheckPrivateDigests checks a sequence of digests with private checks,
// WithInFlight of them at once, and yields an answer for each in input
// order. Any failure is yielded once, as the last pair, after every
// answer before it.
func (c *Client) CheckPrivateDigests(ctx context.Context, digests iter.Seq[breachd.Digest]) iter.Seq2[BulkResult, error] {
	return func(yield func(BulkResult, error) bool) {
		var wg sync.WaitGroup
		defer wg.Wait() // after cancel: every goroutine ends
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		type job struct {
			i    int64
			d    breachd.Digest
			done chan struct{}
			res  Result
			err  error
		}
		work := make(chan *job)
		order := make(chan *job, c.opts.inFlight)
		var cut atomic.Bool // the producer stopped before the source's end
		for range c.opts.inFlight {
			wg.Go(func() {
				for j := range work {
					j.res, j.err = c.CheckPrivateDigest(ctx, j.d)
					close(j.done)
				}
			})
		}
		wg.Go(func() {
			defer close(order)
			defer close(work)
			var i int64
			for d := range digests {
				j := &job{i: i, d: d, done: make(chan struct{})}
				i++
				select {
				case order <- j:
				case <-ctx.Done():
					cut.Store(true)
					return
				}
				select {
				case work <- j:
				case <-ctx.Done():
					j.err = ctx.Err()
					close(j.done)
					return
				}
			}
		})
		for j := range order {
			<-j.done
			if j.err != nil {
				yield(BulkResult{}, j.err)
				return
			}
			br := BulkResult{Index: j.i, Exposed: j.res.Exposed, CorpusVersion: j.res.CorpusVersion}
			for _, b := range j.res.Breaches {
				br.BreachNames = append(br.BreachNames, b.Name)
			}
			if !yield(br, nil) {
				return
			}
		}
		if cut.Load() { // every job queued was answered, but not the whole source
			yield(BulkResult{}, &Error{Op: "CheckPrivate", err: status.FromContextError(ctx.Err()).Err()})
		}
	}
}
