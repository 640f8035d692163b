package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/service"
)

// Admin implements breachdv1.AdminServiceServer over the use cases.
type Admin struct {
	breachdv1.UnimplementedAdminServiceServer
	svc  *service.Service
	log  *slog.Logger
	idle time.Duration // an import stream silent this long is ended
}

var _ breachdv1.AdminServiceServer = (*Admin)(nil)

// NewAdmin returns the admin service over svc; an import stream that sends
// nothing for idle is ended, which frees the import lock.
func NewAdmin(svc *service.Service, log *slog.Logger, idle time.Duration) *Admin {
	return &Admin{svc: svc, log: log, idle: idle}
}

// recvIdle receives a stream's messages on a goroutine of its own, so that
// a silent client can be timed out; it ends with the stream.
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

// ImportBreach runs one streamed import; see the proto for the protocol.
func (s *Admin) ImportBreach(stream breachdv1.AdminService_ImportBreachServer) error {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return toStatus(s.log, "ImportBreach", breachd.Errorf(breachd.ErrInvalidArgument, "ImportBreachRequest: the stream ended before its first message, which must carry the breach; nothing was imported"))
	}
	if err != nil {
		return toStatus(s.log, "ImportBreach", err)
	}
	pb := first.GetBreach()
	if pb == nil {
		return toStatus(s.log, "ImportBreach", breachd.Errorf(breachd.ErrInvalidArgument, "ImportBreachRequest: the first message must carry the breach"))
	}
	b := pb.ToDomain().Breach
	// The protocol: digest batches, then a commit whose count must match.
	// Any other ending yields an error, and the use case commits nothing.
	var received uint64
	msgs := recvIdle(stream.Context(), stream.Recv)
	timer := time.NewTimer(s.idle)
	defer timer.Stop()
	batches := func(yield func([]breachd.Digest, error) bool) {
		batch := make([]breachd.Digest, 0, breachd.MaxBatch)
		for {
			timer.Reset(s.idle)
			var req *breachdv1.ImportBreachRequest
			var err error
			select {
			case m := <-msgs:
				req, err = m.req, m.err
			case <-timer.C:
				s.log.Warn("import stream idle; ended", "breach", b.Name, "idle", s.idle, "received", received)
				yield(nil, breachd.Errorf(breachd.ErrFailedPrecondition, "ImportBreachRequest: nothing arrived for %s after %d digests; the import of %s was ended and nothing was made visible, import it again",
					s.idle, received, b.Name))
				return
			}
			if errors.Is(err, io.EOF) {
				yield(nil, breachd.Errorf(breachd.ErrInvalidArgument, "ImportBreachRequest: stream ended after %d digests without a commit; breach %s was not made visible, import it again",
					received, b.Name))
				return
			}
			if err != nil {
				yield(nil, err)
				return
			}
			switch part := req.GetPart().(type) {
			case *breachdv1.ImportBreachRequest_EmailSha256:
				if err := breachd.ValidateBatch(part.EmailSha256); err != nil {
					yield(nil, inField("ImportBreachRequest.email_sha256", err))
					return
				}
				batch = batch[:0]
				for d := range slices.Chunk(part.EmailSha256, breachd.DigestSize) {
					batch = append(batch, breachd.Digest(d))
				}
				if !yield(batch, nil) {
					return
				}
				received += uint64(len(batch))
			case *breachdv1.ImportBreachRequest_Commit:
				if n := part.Commit.GetDigestCount(); n != received {
					yield(nil, breachd.Errorf(breachd.ErrInvalidArgument, "ImportBreachRequest.commit.digest_count: got %d, but %d digests arrived; breach %s was not made visible",
						n, received, b.Name))
				}
				return
			default:
				yield(nil, breachd.Errorf(breachd.ErrInvalidArgument, "ImportBreachRequest: only the first message may carry a breach"))
				return
			}
		}
	}
	st, err := s.svc.Import(stream.Context(), b, batches)
	if errors.Is(err, breachd.ErrInvalidBreach) {
		err = inField("ImportBreachRequest.breach", err)
	}
	if err != nil {
		return toStatus(s.log, "ImportBreach", err)
	}
	return stream.SendAndClose(&breachdv1.ImportBreachResponse{
		Name: st.Breach, Received: st.Received, Duplicates: st.Duplicates,
		NewAccounts: st.NewAccounts, KnownAccounts: st.KnownAccounts, CorpusVersion: st.Version,
	})
}

// DeleteBreach removes a breach from the corpus.
func (s *Admin) DeleteBreach(ctx context.Context, req *breachdv1.DeleteBreachRequest) (*breachdv1.DeleteBreachResponse, error) {
	removed, version, err := s.svc.DeleteBreach(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(s.log, "DeleteBreach", inMessage("DeleteBreachRequest", err))
	}
	return &breachdv1.DeleteBreachResponse{Name: req.GetName(), AccountsRemoved: removed, CorpusVersion: version}, nil
}

// UpdateBreach corrects a breach's catalogue entry.
func (s *Admin) UpdateBreach(ctx context.Context, req *breachdv1.UpdateBreachRequest) (*breachdv1.UpdateBreachResponse, error) {
	if req.GetBreach() == nil {
		return nil, toStatus(s.log, "UpdateBreach", breachd.Errorf(breachd.ErrInvalidArgument, "UpdateBreachRequest.breach: missing"))
	}
	e, version, err := s.svc.UpdateBreach(ctx, req.GetBreach().ToDomain().Breach)
	if errors.Is(err, breachd.ErrInvalidBreach) {
		err = inField("UpdateBreachRequest.breach", err)
	}
	if err != nil {
		return nil, toStatus(s.log, "UpdateBreach", err)
	}
	return &breachdv1.UpdateBreachResponse{Breach: breachdv1.EntryFromDomain(e), CorpusVersion: version}, nil
}
