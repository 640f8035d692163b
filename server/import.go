package server

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	"google.golang.org/grpc"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// The streamed-import protocol, the same for every kind of corpus: a first
// message with the header (the breach, or the release and its kind), then
// batches, then a commit that counts what was sent. Any other ending (the
// stream closed or broken, a count that does not match, a message out of
// place, nothing received for the idle timeout) ends the batches with an
// error, and the use case commits nothing.

// importHeader receives a stream's first message, which must carry the
// header.
func importHeader[Req, Resp any](stream grpc.ClientStreamingServer[Req, Resp], msg, what string) (*Req, error) {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil, breachd.Errorf(breachd.ErrInvalidArgument, "%s: the stream ended before its first message, which must carry the %s; nothing was imported", msg, what)
	}
	return first, err
}

// breachHeader reads an import's first message, which must carry the
// breach (ImportBreach's, ImportPairs').
func breachHeader[Req any, PReq interface {
	*Req
	GetBreach() *breachdv1.Breach
}, Resp any](stream grpc.ClientStreamingServer[Req, Resp], msg string) (*Req, breachd.Breach, error) {
	first, err := importHeader(stream, msg, "breach")
	if err != nil {
		return nil, breachd.Breach{}, err
	}
	pb := PReq(first).GetBreach()
	if pb == nil {
		return nil, breachd.Breach{}, breachd.Errorf(breachd.ErrInvalidArgument, "%s: the first message must carry the breach", msg)
	}
	return first, pb.ToDomain().Breach, nil
}

// part is what one message after the header brings: a batch of items, or
// the commit with the count the sender sent.
type part[T any] struct {
	items  []T
	commit *breachdv1.ImportCommit
}

// importBatches yields the batches of a stream after its header, decoded
// by decode, until the commit: an import named name of items (digests,
// hashes), which the messages (msg) carry.
func importBatches[Req, Resp, T any](s *AdminServer, stream grpc.ClientStreamingServer[Req, Resp], msg, items, name string,
	decode func(*Req) (part[T], error)) iter.Seq2[[]T, error] {
	return func(yield func([]T, error) bool) {
		ctx, cancel := context.WithCancel(stream.Context())
		defer cancel() // stops the receiver
		msgs := recvIdle(ctx, stream.Recv)
		timer := time.NewTimer(s.idle)
		defer timer.Stop()
		var received uint64
		for {
			timer.Reset(s.idle)
			var m recvd[*Req]
			select {
			case m = <-msgs:
			case <-ctx.Done(): // the caller left, or its credential was revoked
				yield(nil, context.Cause(ctx))
				return
			case <-timer.C:
				s.log.Warn("import stream idle; ended", "import", name, "idle", s.idle, "received", received)
				yield(nil, breachd.Errorf(breachd.ErrFailedPrecondition, "%s: nothing arrived for %s after %d %s; the import of %s was ended and nothing was made visible, import it again",
					msg, s.idle, received, items, name))
				return
			}
			if errors.Is(m.err, io.EOF) {
				yield(nil, breachd.Errorf(breachd.ErrInvalidArgument, "%s: stream ended after %d %s without a commit; %s was not made visible, import it again",
					msg, received, items, name))
				return
			}
			if m.err != nil {
				yield(nil, m.err)
				return
			}
			p, err := decode(m.req)
			if err != nil {
				yield(nil, err)
				return
			}
			if p.commit != nil {
				if n := p.commit.GetDigestCount(); n != received {
					yield(nil, breachd.Errorf(breachd.ErrInvalidArgument, "%s.commit.digest_count: got %d, but %d %s arrived; %s was not made visible",
						msg, n, received, items, name))
				}
				return
			}
			if !yield(p.items, nil) {
				return
			}
			received += uint64(len(p.items))
		}
	}
}

// recvIdle receives a stream's messages on a goroutine of its own, so that
// a silent client can be timed out; it ends with the stream or ctx.
func recvIdle[T any](ctx context.Context, recv func() (T, error)) <-chan recvd[T] {
	out := make(chan recvd[T])
	go func() {
		defer close(out)
		for {
			req, err := recv()
			select {
			case out <- recvd[T]{req, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return out
}

type recvd[T any] struct {
	req T
	err error
}
