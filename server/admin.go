package server

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/service"
)

// AdminServer implements breachdv1.AdminServiceServer over the use cases.
type AdminServer struct {
	breachdv1.UnimplementedAdminServiceServer
	svc  *service.Service
	log  *slog.Logger
	idle time.Duration // an import stream silent this long is ended
}

var _ breachdv1.AdminServiceServer = (*AdminServer)(nil)

// NewAdminServer returns the admin service over svc; an import stream that sends
// nothing for idle is ended, which frees the import lock.
func NewAdminServer(svc *service.Service, log *slog.Logger, idle time.Duration) *AdminServer {
	return &AdminServer{svc: svc, log: log, idle: idle}
}

// ImportBreach runs one streamed import of a breach (see import.go and the
// proto): the breach, batches of digests packed back to back, the commit.
func (s *AdminServer) ImportBreach(stream breachdv1.AdminService_ImportBreachServer) error {
	const method, msg = "ImportBreach", "ImportBreachRequest"
	_, b, err := breachHeader(stream, msg)
	if err != nil {
		return toStatus(s.log, method, err)
	}
	batch := make([]breachd.Digest, 0, breachd.MaxBatch)
	batches := importBatches(s, stream, msg, "digests", "breach "+b.Name, func(req *breachdv1.ImportBreachRequest) (part[breachd.Digest], error) {
		switch p := req.GetPart().(type) {
		case *breachdv1.ImportBreachRequest_EmailSha256:
			var err error
			if batch, err = digestBatch(msg, p.EmailSha256, batch); err != nil {
				return part[breachd.Digest]{}, err
			}
			return part[breachd.Digest]{items: batch}, nil
		case *breachdv1.ImportBreachRequest_Commit:
			return part[breachd.Digest]{commit: p.Commit}, nil
		}
		return part[breachd.Digest]{}, breachd.Errorf(breachd.ErrInvalidArgument, "%s: only the first message may carry a breach", msg)
	})
	st, err := s.svc.Import(stream.Context(), b, batches)
	if errors.Is(err, breachd.ErrInvalidBreach) {
		err = inField(msg+".breach", err)
	}
	if err != nil {
		return toStatus(s.log, method, err)
	}
	return stream.SendAndClose(&breachdv1.ImportBreachResponse{
		Name: st.Breach, Received: st.Received, Duplicates: st.Duplicates,
		NewAccounts: st.NewAccounts, KnownAccounts: st.KnownAccounts, CorpusVersion: st.Version,
	})
}

// digestBatch checks the field email_sha256 of msg and decodes it into
// batch, reused.
func digestBatch(msg string, packed []byte, batch []breachd.Digest) ([]breachd.Digest, error) {
	if err := breachd.ValidateBatch(packed); err != nil {
		return batch, inField(msg+".email_sha256", err)
	}
	batch = batch[:0]
	for d := range slices.Chunk(packed, breachd.DigestSize) {
		batch = append(batch, breachd.Digest(d))
	}
	return batch, nil
}

// DeleteBreach removes a breach from the corpus, or a release from a
// password corpus.
func (s *AdminServer) DeleteBreach(ctx context.Context, req *breachdv1.DeleteBreachRequest) (*breachdv1.DeleteBreachResponse, error) {
	k, err := optionalKind("DeleteBreachRequest", req.GetKind())
	if err != nil {
		return nil, toStatus(s.log, "DeleteBreach", err)
	}
	var removed, version uint64
	if k == 0 {
		removed, version, err = s.svc.DeleteBreach(ctx, req.GetName())
	} else {
		removed, version, err = s.svc.DeleteRelease(ctx, k, req.GetName())
	}
	if err != nil {
		return nil, toStatus(s.log, "DeleteBreach", inMessage("DeleteBreachRequest", err))
	}
	return &breachdv1.DeleteBreachResponse{Name: req.GetName(), AccountsRemoved: removed, CorpusVersion: version}, nil
}

// UpdateBreach corrects a breach's catalogue entry.
func (s *AdminServer) UpdateBreach(ctx context.Context, req *breachdv1.UpdateBreachRequest) (*breachdv1.UpdateBreachResponse, error) {
	if req.GetBreach() == nil {
		return nil, toStatus(s.log, "UpdateBreach", breachd.Errorf(breachd.ErrInvalidArgument, "UpdateBreachRequest.breach: missing"))
	}
	k, err := optionalKind("UpdateBreachRequest", req.GetKind())
	if err != nil {
		return nil, toStatus(s.log, "UpdateBreach", err)
	}
	var e *breachd.CatalogEntry
	var version uint64
	if k == 0 {
		e, version, err = s.svc.UpdateBreach(ctx, req.GetBreach().ToDomain().Breach)
	} else {
		e, version, err = s.svc.UpdateRelease(ctx, k, req.GetBreach().ToDomain().Breach)
	}
	if errors.Is(err, breachd.ErrInvalidBreach) {
		err = inField("UpdateBreachRequest.breach", err)
	}
	if err != nil {
		return nil, toStatus(s.log, "UpdateBreach", err)
	}
	return &breachdv1.UpdateBreachResponse{Breach: breachdv1.EntryFromDomain(e), CorpusVersion: version}, nil
}

// pairSize is a pair on the wire: the account's digest, then the
// password's SHA-1.
const pairSize = breachd.DigestSize + breachd.PasswordSHA1Size

// ImportPairs runs one streamed import of a combolist (see import.go and
// the proto): the breach, batches of pairs, the commit.
func (s *AdminServer) ImportPairs(stream breachdv1.AdminService_ImportPairsServer) error {
	const method, msg = "ImportPairs", "ImportPairsRequest"
	first, b, err := breachHeader(stream, msg)
	if err != nil {
		return toStatus(s.log, method, err)
	}
	batch := make([]breachd.PairRecord, 0, breachd.MaxBatch)
	batches := importBatches(s, stream, msg, "pairs", "breach "+b.Name, func(req *breachdv1.ImportPairsRequest) (part[breachd.PairRecord], error) {
		switch p := req.GetPart().(type) {
		case *breachdv1.ImportPairsRequest_Pairs:
			raw := p.Pairs
			if len(raw)%pairSize != 0 {
				return part[breachd.PairRecord]{}, breachd.Errorf(breachd.ErrInvalidArgument,
					"%s.pairs: %d bytes, not a whole number of pairs (%d bytes each: the email's SHA-256, then the password's SHA-1)", msg, len(raw), pairSize)
			}
			batch = batch[:0]
			for i := 0; i < len(raw); i += pairSize {
				var r breachd.PairRecord
				copy(r.Account[:], raw[i:])
				copy(r.Password[:], raw[i+breachd.DigestSize:i+pairSize])
				batch = append(batch, r)
			}
			return part[breachd.PairRecord]{items: batch}, nil
		case *breachdv1.ImportPairsRequest_Commit:
			return part[breachd.PairRecord]{commit: p.Commit}, nil
		}
		return part[breachd.PairRecord]{}, breachd.Errorf(breachd.ErrInvalidArgument, "%s: only the first message may carry the breach", msg)
	})
	var opts []service.PairOption
	if first.GetCountPasswords() {
		opts = append(opts, service.CountPasswords())
	}
	st, err := s.svc.ImportPairs(stream.Context(), b, batches, opts...)
	if errors.Is(err, breachd.ErrInvalidBreach) {
		err = inField(msg+".breach", err)
	}
	if err != nil {
		return toStatus(s.log, method, err)
	}
	return stream.SendAndClose(&breachdv1.ImportPairsResponse{Name: st.Breach, Received: st.Received, Pairs: st.Pairs,
		Accounts: st.Accounts, CorpusVersion: st.Version})
}
