package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/service"
)

// Passwords implements breachdv1.PasswordServiceServer over the use cases.
type Passwords struct {
	breachdv1.UnimplementedPasswordServiceServer
	svc *service.Service
	log *slog.Logger
}

var _ breachdv1.PasswordServiceServer = (*Passwords)(nil)

func kindOf(msg string, k breachdv1.HashKind) (breachd.HashKind, error) {
	if dk := breachdv1.KindToDomain(k); dk != 0 {
		return dk, nil
	}
	return 0, breachd.Errorf(breachd.ErrInvalidArgument, "%s.kind: %s, want HASH_KIND_SHA1 or HASH_KIND_NTLM", msg, k)
}

// CheckPassword answers for one password hash.
func (s *Passwords) CheckPassword(ctx context.Context, req *breachdv1.CheckPasswordRequest) (*breachdv1.CheckPasswordResponse, error) {
	const method = "CheckPassword"
	k, err := kindOf("CheckPasswordRequest", req.GetKind())
	if err != nil {
		return nil, toStatus(s.log, method, err)
	}
	h, err := breachd.PasswordHashFromBytes(k, req.GetHash())
	if err != nil {
		return nil, toStatus(s.log, method, inField("CheckPasswordRequest.hash", err))
	}
	exp, err := s.svc.CheckPassword(ctx, h)
	if err != nil {
		return nil, toStatus(s.log, method, err)
	}
	return &breachdv1.CheckPasswordResponse{Count: exp.Count, CorpusVersion: exp.CorpusVersion}, nil
}

// Range answers a prefix query.
func (s *Passwords) Range(ctx context.Context, req *breachdv1.RangeRequest) (*breachdv1.RangeResponse, error) {
	const method = "Range"
	k, err := kindOf("RangeRequest", req.GetKind())
	if err != nil {
		return nil, toStatus(s.log, method, err)
	}
	prefix, err := breachd.ParseRangePrefix(req.GetPrefix())
	if err != nil {
		return nil, toStatus(s.log, method, inField("RangeRequest.prefix", err))
	}
	resp := &breachdv1.RangeResponse{}
	v, err := s.svc.PasswordRange(ctx, k, prefix, func(h []byte, n uint64) {
		resp.Hashes = append(resp.Hashes, h...)
		resp.Counts = append(resp.Counts, n)
	})
	if err != nil {
		return nil, toStatus(s.log, method, err)
	}
	resp.CorpusVersion = v
	return resp, nil
}

// ImportPasswords runs one streamed password import; see the proto.
func (s *Admin) ImportPasswords(stream breachdv1.AdminService_ImportPasswordsServer) error {
	const method = "ImportPasswords"
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return toStatus(s.log, method, breachd.Errorf(breachd.ErrInvalidArgument, "ImportPasswordsRequest: the stream ended before its first message, which must carry the release; nothing was imported"))
	}
	if err != nil {
		return toStatus(s.log, method, err)
	}
	hdr := first.GetRelease()
	if hdr == nil || hdr.GetRelease() == nil {
		return toStatus(s.log, method, breachd.Errorf(breachd.ErrInvalidArgument, "ImportPasswordsRequest: the first message must carry the release (kind and record)"))
	}
	k, err := kindOf("ImportPasswordsRequest.release", hdr.GetKind())
	if err != nil {
		return toStatus(s.log, method, err)
	}
	rel := hdr.GetRelease().ToDomain().Breach
	size := k.Size()
	var received uint64
	msgs := recvIdle(stream.Context(), stream.Recv)
	timer := time.NewTimer(s.idle)
	defer timer.Stop()
	batches := func(yield func([]breachd.PasswordRecord, error) bool) {
		batch := make([]breachd.PasswordRecord, 0, breachd.MaxBatch)
		for {
			timer.Reset(s.idle)
			var m recvd[*breachdv1.ImportPasswordsRequest]
			select {
			case m = <-msgs:
			case <-timer.C:
				s.log.Warn("import stream idle; ended", "release", rel.Name, "idle", s.idle, "received", received)
				yield(nil, breachd.Errorf(breachd.ErrFailedPrecondition, "ImportPasswordsRequest: nothing arrived for %s after %d hashes; the import of %s was ended and nothing was made visible, import it again",
					s.idle, received, rel.Name))
				return
			}
			if errors.Is(m.err, io.EOF) {
				yield(nil, breachd.Errorf(breachd.ErrInvalidArgument, "ImportPasswordsRequest: stream ended after %d hashes without a commit; release %s was not made visible, import it again",
					received, rel.Name))
				return
			}
			if m.err != nil {
				yield(nil, m.err)
				return
			}
			switch part := m.req.GetPart().(type) {
			case *breachdv1.ImportPasswordsRequest_Batch:
				hs, ns := part.Batch.GetHashes(), part.Batch.GetCounts()
				if len(hs)%size != 0 || len(hs)/size != len(ns) {
					yield(nil, breachd.Errorf(breachd.ErrInvalidArgument, "ImportPasswordsRequest.batch: %d bytes of hashes (%d bytes each for %s) and %d counts: want one count per whole hash",
						len(hs), size, k, len(ns)))
					return
				}
				batch = batch[:0]
				for i, n := range ns {
					var r breachd.PasswordRecord
					copy(r.Hash[:], hs[i*size:(i+1)*size])
					r.Count = n
					batch = append(batch, r)
				}
				if !yield(batch, nil) {
					return
				}
				received += uint64(len(batch))
			case *breachdv1.ImportPasswordsRequest_Commit:
				if n := part.Commit.GetDigestCount(); n != received {
					yield(nil, breachd.Errorf(breachd.ErrInvalidArgument, "ImportPasswordsRequest.commit.digest_count: got %d, but %d hashes arrived; release %s was not made visible",
						n, received, rel.Name))
				}
				return
			default:
				yield(nil, breachd.Errorf(breachd.ErrInvalidArgument, "ImportPasswordsRequest: only the first message may carry the release"))
				return
			}
		}
	}
	st, err := s.svc.ImportPasswords(stream.Context(), k, rel, hdr.GetExpectedHashes(), batches)
	if errors.Is(err, breachd.ErrInvalidBreach) {
		err = inField("ImportPasswordsRequest.release", err)
	}
	if err != nil {
		return toStatus(s.log, method, err)
	}
	return stream.SendAndClose(&breachdv1.ImportPasswordsResponse{
		Name: st.Release, Kind: hdr.GetKind(), Received: st.Received,
		NewHashes: st.NewHashes, UpdatedHashes: st.UpdatedHashes, CorpusVersion: st.Version,
	})
}
