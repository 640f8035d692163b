package server

import (
	"context"
	"errors"
	"log/slog"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/service"
)

// PasswordServer implements breachdv1.PasswordServiceServer over the use cases.
type PasswordServer struct {
	breachdv1.UnimplementedPasswordServiceServer
	svc *service.Service
	log *slog.Logger
}

var _ breachdv1.PasswordServiceServer = (*PasswordServer)(nil)

func kindOf(msg string, k breachdv1.HashKind) (breachd.HashKind, error) {
	if dk := breachdv1.KindToDomain(k); dk != 0 {
		return dk, nil
	}
	return 0, breachd.Errorf(breachd.ErrInvalidArgument, "%s.kind: %s, want HASH_KIND_SHA1 or HASH_KIND_NTLM", msg, k)
}

// optionalKind is kindOf for a catalogue call's kind field, where
// HASH_KIND_UNSPECIFIED (0) names the breaches of accounts.
func optionalKind(msg string, k breachdv1.HashKind) (breachd.HashKind, error) {
	if k == breachdv1.HashKind_HASH_KIND_UNSPECIFIED {
		return 0, nil
	}
	return kindOf(msg, k)
}

// CheckPassword answers for one password hash.
func (s *PasswordServer) CheckPassword(ctx context.Context, req *breachdv1.CheckPasswordRequest) (*breachdv1.CheckPasswordResponse, error) {
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
func (s *PasswordServer) Range(ctx context.Context, req *breachdv1.RangeRequest) (*breachdv1.RangeResponse, error) {
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

// ImportPasswords runs one streamed import of a password release (see
// import.go and the proto): the release and its kind, batches of hashes
// with their counts, the commit.
func (s *AdminServer) ImportPasswords(stream breachdv1.AdminService_ImportPasswordsServer) error {
	const method, msg = "ImportPasswords", "ImportPasswordsRequest"
	first, err := importHeader(stream, msg, "release")
	if err != nil {
		return toStatus(s.log, method, err)
	}
	hdr := first.GetRelease()
	if hdr == nil || hdr.GetRelease() == nil {
		return toStatus(s.log, method, breachd.Errorf(breachd.ErrInvalidArgument, "%s: the first message must carry the release (kind and record)", msg))
	}
	k, err := kindOf(msg+".release", hdr.GetKind())
	if err != nil {
		return toStatus(s.log, method, err)
	}
	rel := hdr.GetRelease().ToDomain().Breach
	size := k.Size()
	batch := make([]breachd.PasswordRecord, 0, breachd.MaxBatch)
	batches := importBatches(s, stream, msg, "hashes", "release "+rel.Name, func(req *breachdv1.ImportPasswordsRequest) (part[breachd.PasswordRecord], error) {
		switch p := req.GetPart().(type) {
		case *breachdv1.ImportPasswordsRequest_Batch:
			hs, ns := p.Batch.GetHashes(), p.Batch.GetCounts()
			if len(hs)%size != 0 || len(hs)/size != len(ns) {
				return part[breachd.PasswordRecord]{}, breachd.Errorf(breachd.ErrInvalidArgument, "%s.batch: %d bytes of hashes (%d bytes each for %s) and %d counts: want one count per whole hash",
					msg, len(hs), size, k, len(ns))
			}
			batch = batch[:0]
			for i, n := range ns {
				var r breachd.PasswordRecord
				copy(r.Hash[:], hs[i*size:(i+1)*size])
				r.Count = n
				batch = append(batch, r)
			}
			return part[breachd.PasswordRecord]{items: batch}, nil
		case *breachdv1.ImportPasswordsRequest_Commit:
			return part[breachd.PasswordRecord]{commit: p.Commit}, nil
		}
		return part[breachd.PasswordRecord]{}, breachd.Errorf(breachd.ErrInvalidArgument, "%s: only the first message may carry the release", msg)
	})
	st, err := s.svc.ImportPasswords(stream.Context(), k, rel, hdr.GetExpectedHashes(), batches)
	if errors.Is(err, breachd.ErrInvalidBreach) {
		err = inField(msg+".release", err)
	}
	if err != nil {
		return toStatus(s.log, method, err)
	}
	return stream.SendAndClose(&breachdv1.ImportPasswordsResponse{
		Name: st.Release, Kind: hdr.GetKind(), Received: st.Received,
		NewHashes: st.NewHashes, UpdatedHashes: st.UpdatedHashes, CorpusVersion: st.Version,
	})
}
