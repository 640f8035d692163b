package server

import (
	"context"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/service"
)

// AssessServer implements breachdv1.AssessServiceServer over the use cases.
type AssessServer struct {
	breachdv1.UnimplementedAssessServiceServer
	exposure *ExposureServer // its use cases, logger and summary cache
}

var _ breachdv1.AssessServiceServer = (*AssessServer)(nil)

// Assess answers for one account.
func (s *AssessServer) Assess(ctx context.Context, req *breachdv1.AssessRequest) (*breachdv1.AssessResponse, error) {
	const method = "Assess"
	ar, err := assessFromWire(req)
	if err != nil {
		return nil, toStatus(s.exposure.log, method, err)
	}
	if p, ok := auth.FromContext(ctx); ok {
		ar.Principal = p.Name
	}
	a, err := s.exposure.svc.Assess(ctx, ar)
	if err == nil {
		err = service.AtLeast(a.CorpusVersion, req.GetMinCorpusVersion())
	}
	if err != nil {
		return nil, toStatus(s.exposure.log, method, err)
	}
	resp := &breachdv1.AssessResponse{
		Decision: breachdv1.DecisionFromDomain(a.Decision), WouldBe: breachdv1.DecisionFromDomain(a.WouldBe),
		Enforced: a.Enforced, Reasons: a.Reasons, PasswordCount: a.PasswordCount, CorpusVersion: a.CorpusVersion,
		Breaches: make([]*breachdv1.BreachAssessment, len(a.Breaches)),
	}
	for i, b := range a.Breaches {
		resp.Breaches[i] = &breachdv1.BreachAssessment{Breach: s.exposure.summary(b.CatalogEntry), PasswordStatus: breachdv1.StatusFromDomain(b.Password)}
	}
	return resp, nil
}

// assessFromWire decodes an AssessRequest.
func assessFromWire(req *breachdv1.AssessRequest) (breachd.AssessRequest, error) {
	const msg = "AssessRequest"
	var ar breachd.AssessRequest
	d, err := breachd.DigestFromBytes(req.GetEmailSha256())
	if err != nil {
		return ar, breachd.Errorf(breachd.ErrInvalidArgument, "%s.email_sha256: got %d bytes, want %d (the SHA-256 of the canonical email)",
			msg, len(req.GetEmailSha256()), breachd.DigestSize)
	}
	ar.Account = d
	switch pw := req.GetPasswordSha1(); len(pw) {
	case 0:
	case breachd.PasswordSHA1Size:
		copy(ar.Password[:], pw)
		ar.HasPassword = true
	default:
		return ar, breachd.Errorf(breachd.ErrInvalidArgument, "%s.password_sha1: got %d bytes, want %d (the SHA-1 of the password) or none",
			msg, len(pw), breachd.PasswordSHA1Size)
	}
	c, ok := breachdv1.ContextToDomain(req.GetContext())
	if !ok {
		return ar, breachd.Errorf(breachd.ErrInvalidArgument, "%s.context: %d is not a context", msg, req.GetContext())
	}
	ar.Context = c
	return ar, nil
}
