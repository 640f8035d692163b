package httpapi

import (
	"encoding/hex"
	"net/http"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/canon"
)

// assessRequest is POST /v1/assess's body: the account as an address
// (canonicalised and hashed on arrival, never logged) or as the hex
// SHA-256 of its canonical form; the password only as its hex SHA-1.
type assessRequest struct {
	Email        string `json:"email"`
	EmailSHA256  string `json:"email_sha256"`
	PasswordSHA1 string `json:"password_sha1"`
	Context      string `json:"context"` // signup, login or password_change
}

type assessBreach struct {
	Name           string   `json:"name"`
	Title          string   `json:"title"`
	BreachDate     string   `json:"breach_date"`
	DataClasses    []string `json:"data_classes"`
	PasswordStatus string   `json:"password_status"` // exposed, not_exposed or unknown
}

type assessResponse struct {
	Decision      string         `json:"decision"`
	WouldBe       string         `json:"would_be"`
	Enforced      bool           `json:"enforced"`
	Reasons       []string       `json:"reasons"`
	Breaches      []assessBreach `json:"breaches"`
	PasswordCount uint64         `json:"password_count"`
	CorpusVersion uint64         `json:"corpus_version"`
}

// maxAssessBody bounds a request body: a few hundred bytes are enough.
const maxAssessBody = 4 << 10

// assess answers POST /v1/assess: what a sign-in flow should do about an
// account, and why.
func (a *API) assess(w http.ResponseWriter, r *http.Request) int {
	const route = "assess"
	req, err := decodeAssess(r)
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	if p, ok := auth.FromContext(r.Context()); ok {
		req.Principal = p.Name
	}
	as, err := a.svc.Assess(r.Context(), req)
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	setVersion(w, as.CorpusVersion)
	out := assessResponse{Decision: as.Decision.String(), WouldBe: as.WouldBe.String(), Enforced: as.Enforced,
		Reasons: as.Reasons, Breaches: make([]assessBreach, len(as.Breaches)), PasswordCount: as.PasswordCount, CorpusVersion: as.CorpusVersion}
	if out.Reasons == nil {
		out.Reasons = []string{}
	}
	for i, b := range as.Breaches {
		out.Breaches[i] = assessBreach{Name: b.Name, Title: b.Title, BreachDate: b.BreachDate, DataClasses: b.DataClasses, PasswordStatus: b.Password.String()}
	}
	writeJSON(w, http.StatusOK, out)
	return http.StatusOK
}

// decodeAssess reads and checks a request body.
func decodeAssess(r *http.Request) (breachd.AssessRequest, error) {
	var ar breachd.AssessRequest
	var in assessRequest
	// Strict: a "password" field must never be taken.
	if err := decodeBody(r.Body, maxAssessBody, &in, true); err != nil {
		return ar, breachd.Errorf(breachd.ErrInvalidArgument,
			"the body is not an assessment: want JSON with email (or email_sha256), optional password_sha1 (hex SHA-1; never the password) and context")
	}
	switch {
	case (in.Email == "") == (in.EmailSHA256 == ""):
		return ar, breachd.Errorf(breachd.ErrInvalidArgument, "give one of email and email_sha256")
	case in.Email != "":
		d, err := canon.Digest(in.Email)
		if err != nil {
			return ar, breachd.Errorf(breachd.ErrInvalidArgument, "email is not an email address")
		}
		ar.Account = d
	default:
		d, err := breachd.ParseDigest(in.EmailSHA256)
		if err != nil {
			return ar, breachd.Errorf(breachd.ErrInvalidArgument, "email_sha256: want 64 hex digits (the SHA-256 of the canonical email)")
		}
		ar.Account = d
	}
	if in.PasswordSHA1 != "" {
		h, err := hex.DecodeString(in.PasswordSHA1)
		if err != nil || len(h) != breachd.PasswordSHA1Size {
			return ar, breachd.Errorf(breachd.ErrInvalidArgument, "password_sha1: want 40 hex digits (the SHA-1 of the password, hashed by the client)")
		}
		copy(ar.Password[:], h)
		ar.HasPassword = true
	}
	c, err := breachd.ParseAssessContext(in.Context)
	if err != nil {
		return ar, err
	}
	ar.Context = c
	return ar, nil
}
