package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/store"
)

// Importer is what the admin service needs from the store.
type Importer interface {
	BeginImport(ctx context.Context, b breachd.Breach) (*store.Import, error)
}

// Admin implements breachdv1.AdminServiceServer.
type Admin struct {
	breachdv1.UnimplementedAdminServiceServer
	importer Importer
	log      *slog.Logger
}

var _ breachdv1.AdminServiceServer = (*Admin)(nil)

// NewAdmin returns the admin service over importer.
func NewAdmin(importer Importer, log *slog.Logger) *Admin {
	return &Admin{importer: importer, log: log}
}

// ImportBreach runs one streamed import; see the proto for the protocol.
func (s *Admin) ImportBreach(stream breachdv1.AdminService_ImportBreachServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	pb := first.GetBreach()
	if pb == nil {
		return invalid("ImportBreachRequest: the first message must carry the breach")
	}
	b, err := breachFromProto(pb)
	if err != nil {
		return err
	}
	imp, err := s.importer.BeginImport(ctx, b)
	if err != nil {
		return toStatus(s.log, "ImportBreach", err)
	}
	defer imp.Abort() // no-op after a commit
	var received uint64
	batch := make([]breachd.Digest, 0, MaxBatch)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return status.Errorf(codes.InvalidArgument,
				"ImportBreachRequest: stream ended after %d digests without a commit; breach %s was not made visible, import it again", received, b.Name)
		}
		if err != nil {
			return err
		}
		switch part := req.GetPart().(type) {
		case *breachdv1.ImportBreachRequest_EmailSha256:
			if err := validateBatch("ImportBreachRequest", part.EmailSha256); err != nil {
				return err
			}
			batch = batch[:0]
			for d := range slices.Chunk(part.EmailSha256, breachd.DigestSize) {
				batch = append(batch, breachd.Digest(d))
			}
			if err := imp.Add(ctx, batch); err != nil {
				return toStatus(s.log, "ImportBreach", err)
			}
			received += uint64(len(batch))
		case *breachdv1.ImportBreachRequest_Commit:
			if n := part.Commit.GetDigestCount(); n != received {
				return invalid("ImportBreachRequest.commit.digest_count: got %d, but %d digests arrived; breach %s was not made visible", n, received, b.Name)
			}
			st, err := imp.Commit(ctx)
			if err != nil {
				return toStatus(s.log, "ImportBreach", err)
			}
			return stream.SendAndClose(&breachdv1.ImportBreachResponse{
				Name: st.Breach, Received: st.Received, Duplicates: st.Duplicates,
				NewAccounts: st.NewAccounts, KnownAccounts: st.KnownAccounts, CorpusVersion: st.Version,
			})
		default:
			return invalid("ImportBreachRequest: only the first message may carry a breach")
		}
	}
}
