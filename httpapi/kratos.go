package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/canon"
)

// Ory Kratos's web-hook contract (v1.3, 'response.parse: true'; see
// deploy/kratos): Kratos posts what its Jsonnet template renders, here
// {"email": ..., "metadata_admin": ...}, with ?flow=registration or
// ?flow=login. The answer either interrupts the flow (a 4xx whose
// "messages" Kratos shows on the email field) or, at registration, gives
// the identity to store: its admin metadata with a "breachd" entry (the
// assessment, without the address), so that Kratos's own rules can ask an
// exposed account for a second factor. Kratos replaces metadata_admin
// whole with what a hook returns, so the hook returns what it was sent
// plus its entry. A login is only ever interrupted (Kratos does not store
// a login hook's identity); otherwise 204.

type kratosRequest struct {
	Email         string                     `json:"email"`
	MetadataAdmin map[string]json.RawMessage `json:"metadata_admin"`
}

// kratosVerdict is what breachd stores in metadata_admin.breachd.
type kratosVerdict struct {
	Exposed       bool      `json:"exposed"`
	Breaches      []string  `json:"breaches"`
	Decision      string    `json:"decision"`
	WouldBe       string    `json:"would_be"`
	Reasons       []string  `json:"reasons"`
	CorpusVersion uint64    `json:"corpus_version"`
	CheckedAt     time.Time `json:"checked_at"`
}

type kratosMessage struct {
	ID      int            `json:"id"`
	Text    string         `json:"text"`
	Type    string         `json:"type"`
	Context map[string]any `json:"context,omitempty"`
}

// kratosMessages interrupts a flow: messages for the fields named.
type kratosMessages struct {
	Messages []kratosField `json:"messages"`
}

type kratosField struct {
	InstancePtr string          `json:"instance_ptr"`
	Messages    []kratosMessage `json:"messages"`
}

// kratosBlocked is the id of breachd's message when it stops a flow, in
// a range Kratos's own messages do not use.
const kratosBlocked = 4_090_001

// kratosHook answers POST /v1/hooks/kratos.
func (a *API) kratosHook(w http.ResponseWriter, r *http.Request) int {
	const route = "kratos"
	q, err := query(r.URL.RawQuery)
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	var at breachd.AssessContext
	switch flow := q.Get("flow"); flow {
	case "registration":
		at = breachd.ContextSignup
	case "login":
		at = breachd.ContextLogin
	default:
		return writeError(w, a.log, route, breachd.Errorf(breachd.ErrInvalidArgument,
			"flow %s: put ?flow=registration or ?flow=login in the web hook's url", breachd.Quote(flow)))
	}
	var in kratosRequest
	if err := decodeBody(r.Body, 1<<20, &in, false); err != nil {
		return writeError(w, a.log, route, breachd.Errorf(breachd.ErrInvalidArgument,
			"the body is not the hook's JSON: render {\"email\": ctx.identity.traits.email, \"metadata_admin\": ctx.identity.metadata_admin} (deploy/kratos/breachd.jsonnet)"))
	}
	d, err := canon.Digest(in.Email)
	if err != nil {
		return writeError(w, a.log, route, breachd.Errorf(breachd.ErrInvalidArgument, "email is not an email address: map the identity's email trait in the Jsonnet body"))
	}
	req := breachd.AssessRequest{Account: d, Context: at}
	if p, ok := auth.FromContext(r.Context()); ok {
		req.Principal = p.Name
	}
	as, err := a.svc.Assess(r.Context(), req)
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	setVersion(w, as.CorpusVersion)
	names := make([]string, len(as.Breaches))
	for i, b := range as.Breaches {
		names[i] = b.Name
	}
	if as.Decision == breachd.Block {
		writeJSON(w, http.StatusForbidden, kratosMessages{Messages: []kratosField{{InstancePtr: "#/traits/email",
			Messages: []kratosMessage{{ID: kratosBlocked, Type: "error",
				Text:    "This email address appears in a known data breach. Use another address, or contact support.",
				Context: map[string]any{"breaches": names, "reasons": as.Reasons}}}}}})
		return http.StatusForbidden
	}
	if at != breachd.ContextSignup {
		w.WriteHeader(http.StatusNoContent)
		return http.StatusNoContent
	}
	meta := in.MetadataAdmin
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	reasons := as.Reasons
	if reasons == nil {
		reasons = []string{}
	}
	v, _ := json.Marshal(kratosVerdict{Exposed: len(as.Breaches) > 0, Breaches: names, Decision: as.Decision.String(),
		WouldBe: as.WouldBe.String(), Reasons: reasons, CorpusVersion: as.CorpusVersion, CheckedAt: time.Now().UTC().Truncate(time.Second)})
	meta["breachd"] = v
	writeJSON(w, http.StatusOK, map[string]any{"identity": map[string]any{"metadata_admin": meta}})
	return http.StatusOK
}
