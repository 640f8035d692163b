package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/breachd/breachd"
)

// The private check's JSON face (docs/PRIVATE-LOOKUP.md): the gRPC
// messages' fields, with bytes in standard base64.

type privateInfoResponse struct {
	PrefixBits     int    `json:"prefix_bits"`
	BucketMin      int    `json:"bucket_min"`
	SmallestBucket uint64 `json:"smallest_bucket"`
	Accounts       uint64 `json:"accounts"`
	CorpusVersion  uint64 `json:"corpus_version"`
	Suite          string `json:"suite"`
	ValueSize      int    `json:"value_size"`
}

type privateCheckRequest struct {
	Prefix         []byte `json:"prefix"`
	PrefixBits     int    `json:"prefix_bits"`
	BlindedElement []byte `json:"blinded_element"`
}

type privateBreach struct {
	Name        string   `json:"name"`
	Title       string   `json:"title"`
	BreachDate  string   `json:"breach_date"`
	DataClasses []string `json:"data_classes"`
}

type privateEntry struct {
	Value    []byte   `json:"value"`
	Breaches []uint32 `json:"breaches"`
}

type privateCheckResponse struct {
	EvaluatedElement []byte          `json:"evaluated_element"`
	PrefixBits       int             `json:"prefix_bits"`
	Breaches         []privateBreach `json:"breaches"`
	Entries          []privateEntry  `json:"entries"`
	CorpusVersion    uint64          `json:"corpus_version"`
	Padding          string          `json:"padding"` // last: see writePadded
}

// maxPrivateBody bounds a request body: a few hundred bytes are enough.
const maxPrivateBody = 4 << 10

// privateInfo answers GET /v1/private/info.
func (a *API) privateInfo(w http.ResponseWriter, r *http.Request) int {
	info, err := a.svc.PrivateInfo(r.Context())
	if err != nil {
		return writeError(w, a.log, "private-info", err)
	}
	setVersion(w, info.CorpusVersion)
	writeJSON(w, http.StatusOK, privateInfoResponse{PrefixBits: info.PrefixBits, BucketMin: info.BucketMin,
		SmallestBucket: info.SmallestBucket, Accounts: info.Accounts, CorpusVersion: info.CorpusVersion,
		Suite: breachd.PrivateSuite, ValueSize: breachd.PrivateValueSize})
	return http.StatusOK
}

// privateCheck answers POST /v1/private/check, padded to its size class.
func (a *API) privateCheck(w http.ResponseWriter, r *http.Request) int {
	const route = "private-check"
	var in privateCheckRequest
	if err := decodeBody(r.Body, maxPrivateBody, &in, true); err != nil {
		return writeError(w, a.log, route, breachd.Errorf(breachd.ErrInvalidArgument,
			`the body is not {"prefix": base64, "prefix_bits": n, "blinded_element": base64}: %v`, err))
	}
	ans, err := a.svc.CheckPrivate(r.Context(), breachd.PrivateQuery{Prefix: in.Prefix, PrefixBits: in.PrefixBits, Blinded: in.BlindedElement})
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	setVersion(w, ans.CorpusVersion)
	out := privateCheckResponse{EvaluatedElement: ans.Evaluated, PrefixBits: ans.PrefixBits, CorpusVersion: ans.CorpusVersion,
		Breaches: []privateBreach{}, Entries: make([]privateEntry, len(ans.Entries))}
	bs, index := ans.Breaches()
	for _, b := range bs {
		out.Breaches = append(out.Breaches, privateBreach{Name: b.Name, Title: b.Title, BreachDate: b.BreachDate, DataClasses: b.DataClasses})
	}
	for i, e := range ans.Entries {
		pe := privateEntry{Value: e.Value[:], Breaches: make([]uint32, len(e.Breaches))}
		for j, b := range e.Breaches {
			pe.Breaches[j] = index[b]
		}
		out.Entries[i] = pe
	}
	b, err := json.Marshal(out) // "padding":"" included
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	// The padding's characters need no escaping: the body grows by as many
	// bytes, to exactly its size class.
	n := len(b)
	padded := make([]byte, 0, breachd.PaddedSize(n))
	padded = append(padded, b[:n-2]...) // up to the padding's opening quote
	padded = append(padded, strings.Repeat(" ", breachd.PaddedSize(n)-n)...)
	padded = append(padded, b[n-2:]...)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(padded)))
	w.WriteHeader(http.StatusOK)
	w.Write(padded)
	return http.StatusOK
}
