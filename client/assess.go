package client

import (
	"context"
	"crypto/sha1"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// Assessment is the daemon's answer about an account at sign-in: the
// decision to act on, why, and the facts it was drawn from.
type Assessment struct {
	Decision breachd.Decision // Allow in report-only mode
	WouldBe  breachd.Decision // what enforcing would answer
	Enforced bool
	Reasons  []string // the rules that fired
	Breaches []BreachAssessment
	// PasswordCount is how often the password appears in the password
	// corpus (0: never, or no password given).
	PasswordCount uint64
	CorpusVersion uint64
}

// BreachAssessment is one breach of the account's, with what is known of
// its password there.
type BreachAssessment struct {
	BreachSummary
	Password breachd.PasswordStatus
}

// Assess asks what to do about the account email, whose password (if not
// empty) is hashed here: only its SHA-1 is sent, with the address's digest.
func (c *Client) Assess(ctx context.Context, email, password string, at breachd.AssessContext) (Assessment, error) {
	d, err := canon.Digest(email)
	if err != nil {
		return Assessment{}, err
	}
	var pw *[breachd.PasswordSHA1Size]byte
	if password != "" {
		h := sha1.Sum([]byte(password))
		pw = &h
	}
	return c.AssessDigest(ctx, d, pw, at)
}

// AssessDigest is Assess for an account's digest and its password's SHA-1
// (nil: none).
func (c *Client) AssessDigest(ctx context.Context, d breachd.Digest, passwordSHA1 *[breachd.PasswordSHA1Size]byte, at breachd.AssessContext) (Assessment, error) {
	req := &breachdv1.AssessRequest{EmailSha256: d[:], Context: breachdv1.ContextFromDomain(at), MinCorpusVersion: minVersion(ctx)}
	if passwordSHA1 != nil {
		req.PasswordSha1 = passwordSHA1[:]
	}
	var resp *breachdv1.AssessResponse
	err := c.retry(ctx, "Assess", func() error {
		var err error
		resp, err = c.assess.Assess(ctx, req)
		if err == nil {
			err = behind(ctx, resp.GetCorpusVersion())
		}
		return err
	})
	if err != nil {
		return Assessment{}, err
	}
	a := Assessment{Decision: breachdv1.DecisionToDomain(resp.GetDecision()), WouldBe: breachdv1.DecisionToDomain(resp.GetWouldBe()),
		Enforced: resp.GetEnforced(), Reasons: resp.GetReasons(), PasswordCount: resp.GetPasswordCount(), CorpusVersion: resp.GetCorpusVersion()}
	for _, b := range resp.GetBreaches() {
		s := b.GetBreach()
		a.Breaches = append(a.Breaches, BreachAssessment{
			BreachSummary: BreachSummary{Name: s.GetName(), Title: s.GetTitle(), BreachDate: s.GetBreachDate(), DataClasses: s.GetDataClasses()},
			Password:      breachdv1.StatusToDomain(b.GetPasswordStatus())})
	}
	return a, nil
}
