package server

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// MaxBatch is the most digests one CheckStream or ImportBreach message may carry.
const MaxBatch = 10_000

func invalid(format string, a ...any) error {
	return status.Errorf(codes.InvalidArgument, format, a...)
}

func validateCheck(req *breachdv1.CheckRequest) (breachd.Digest, error) {
	d, err := breachd.DigestFromBytes(req.GetEmailSha256())
	if err != nil {
		return d, invalid("CheckRequest.email_sha256: got %d bytes, want %d (the SHA-256 of the canonical email)",
			len(req.GetEmailSha256()), breachd.DigestSize)
	}
	return d, nil
}

// validateBatch checks a packed batch of digests in field msg.email_sha256.
func validateBatch(msg string, packed []byte) error {
	n := len(packed)
	switch {
	case n == 0:
		return invalid("%s.email_sha256: empty batch, want 1 to %d digests", msg, MaxBatch)
	case n%breachd.DigestSize != 0:
		return invalid("%s.email_sha256: got %d bytes, want a multiple of %d (digests packed back to back)", msg, n, breachd.DigestSize)
	case n/breachd.DigestSize > MaxBatch:
		return invalid("%s.email_sha256: got %d digests, want at most %d per message: split the batch", msg, n/breachd.DigestSize, MaxBatch)
	}
	return nil
}

func validateGetBreach(req *breachdv1.GetBreachRequest) error {
	if req.GetName() == "" {
		return invalid("GetBreachRequest.name: empty, want a breach name")
	}
	return nil
}

func breachFromProto(p *breachdv1.Breach) (breachd.Breach, error) {
	b := breachd.Breach{
		Name: p.GetName(), Title: p.GetTitle(), Domain: p.GetDomain(), BreachDate: p.GetBreachDate(),
		PwnCount: p.GetPwnCount(), Description: p.GetDescription(), DataClasses: p.GetDataClasses(),
		IsVerified: p.GetIsVerified(), IsSensitive: p.GetIsSensitive(),
	}
	if p.GetAddedDate() != nil {
		b.AddedDate = p.GetAddedDate().AsTime()
	}
	if err := b.Validate(); err != nil {
		return b, invalid("ImportBreachRequest.breach: %v", err)
	}
	return b, nil
}
