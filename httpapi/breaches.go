package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
)

// breachModel is upstream's breach model, field for field and in its
// order. Dates are UTC with a 'Z', to the second; Attribution and
// DisclosureUrl are null when unknown, as upstream writes them.
type breachModel struct {
	Name               string   `json:"Name"`
	Title              string   `json:"Title"`
	Domain             string   `json:"Domain"`
	BreachDate         string   `json:"BreachDate"`
	AddedDate          string   `json:"AddedDate"`
	ModifiedDate       string   `json:"ModifiedDate"`
	PwnCount           int64    `json:"PwnCount"`
	Description        string   `json:"Description"`
	LogoPath           string   `json:"LogoPath"`
	Attribution        *string  `json:"Attribution"`
	DisclosureURL      *string  `json:"DisclosureUrl"`
	DataClasses        []string `json:"DataClasses"`
	IsVerified         bool     `json:"IsVerified"`
	IsFabricated       bool     `json:"IsFabricated"`
	IsSensitive        bool     `json:"IsSensitive"`
	IsRetired          bool     `json:"IsRetired"`
	IsSpamList         bool     `json:"IsSpamList"`
	IsMalware          bool     `json:"IsMalware"`
	IsSubscriptionFree bool     `json:"IsSubscriptionFree"`
	IsStealerLog       bool     `json:"IsStealerLog"`
}

// truncated is a breach in a truncated breachedaccount answer.
type truncated struct {
	Name string `json:"Name"`
}

const dateTime = "2006-01-02T15:04:05Z"

func modelOf(e *breachd.CatalogEntry) breachModel {
	b := &e.Breach
	modified := b.ModifiedDate
	if modified.IsZero() {
		modified = b.AddedDate
	}
	classes := b.DataClasses
	if classes == nil {
		classes = []string{}
	}
	pwn := b.PwnCount
	if pwn == 0 { // the manifest did not say: what the corpus holds
		pwn = e.AccountCount
	}
	return breachModel{
		Name: b.Name, Title: b.Title, Domain: b.Domain, BreachDate: b.BreachDate,
		AddedDate: stamp(b.AddedDate), ModifiedDate: stamp(modified), PwnCount: pwn,
		Description: b.Description, LogoPath: b.LogoPath,
		Attribution: nullable(b.Attribution), DisclosureURL: nullable(b.DisclosureURL),
		DataClasses: classes, IsVerified: b.IsVerified, IsFabricated: b.IsFabricated,
		IsSensitive: b.IsSensitive, IsRetired: b.IsRetired, IsSpamList: b.IsSpamList,
		IsMalware: b.IsMalware, IsSubscriptionFree: b.IsSubscriptionFree, IsStealerLog: b.IsStealerLog,
	}
}

func stamp(t time.Time) string { return t.UTC().Truncate(time.Second).Format(dateTime) }

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func models(es []*breachd.CatalogEntry) []breachModel {
	out := make([]breachModel, 0, len(es))
	for _, e := range es {
		out = append(out, modelOf(e))
	}
	return out
}

// boolParam reads an optional true/false query parameter, either case.
func boolParam(q params, name string, def bool) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	switch strings.ToLower(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return def, breachd.Errorf(breachd.ErrInvalidArgument, "%s: %s is not true or false", name, breachd.Quote(v))
}

func setVersion(w http.ResponseWriter, v uint64) {
	w.Header().Set(headerCorpusVersion, strconv.FormatUint(v, 10))
}

// breachedAccount answers GET /api/v3/breachedaccount/{account}: the
// breaches the account is in (names only unless truncateResponse=false),
// 404 when none. The address is canonicalised and hashed here and goes no
// further; it is never logged.
func (a *API) breachedAccount(w http.ResponseWriter, r *http.Request) int {
	const route = "breachedaccount"
	d, err := canon.Digest(r.PathValue("account"))
	if err != nil {
		return writeError(w, a.log, route, breachd.Errorf(breachd.ErrInvalidArgument,
			"the account does not comply with an acceptable format: want an email address"))
	}
	q, err := query(r.URL.RawQuery)
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	trunc, err := boolParam(q, "truncateResponse", true)
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	unverified, err := boolParam(q, "includeUnverified", true)
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	domain := q.Get("domain")
	exp, err := a.svc.Check(r.Context(), d)
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	setVersion(w, exp.CorpusVersion)
	var hits []*breachd.CatalogEntry
	for _, b := range exp.Breaches {
		if (domain == "" || strings.EqualFold(b.Domain, domain)) && (unverified || b.IsVerified) {
			hits = append(hits, b)
		}
	}
	if len(hits) == 0 {
		w.WriteHeader(http.StatusNotFound)
		return http.StatusNotFound
	}
	if trunc {
		out := make([]truncated, len(hits))
		for i, b := range hits {
			out[i].Name = b.Name
		}
		writeJSON(w, http.StatusOK, out)
		return http.StatusOK
	}
	writeJSON(w, http.StatusOK, models(hits))
	return http.StatusOK
}

// breaches answers GET /api/v3/breaches: the catalogue, optionally of one
// domain (domain=) or by spam-list flag (IsSpamList=).
func (a *API) breaches(w http.ResponseWriter, r *http.Request) int {
	const route = "breaches"
	q, err := query(r.URL.RawQuery)
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	domain := q.Get("domain")
	spam := q.Get("IsSpamList")
	wantSpam, err := boolParam(q, "IsSpamList", false)
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	all, v, err := a.svc.AllBreaches(r.Context())
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	setVersion(w, v)
	var out []*breachd.CatalogEntry
	for _, b := range all {
		if (domain == "" || strings.EqualFold(b.Domain, domain)) && (spam == "" || b.IsSpamList == wantSpam) {
			out = append(out, b)
		}
	}
	writeJSON(w, http.StatusOK, models(out))
	return http.StatusOK
}

// breach answers GET /api/v3/breach/{name}: one breach, 404 if unknown.
func (a *API) breach(w http.ResponseWriter, r *http.Request) int {
	const route = "breach"
	b, v, err := a.svc.GetBreach(r.Context(), r.PathValue("name"))
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	setVersion(w, v)
	writeJSON(w, http.StatusOK, modelOf(b))
	return http.StatusOK
}

// dataClasses answers GET /api/v3/dataclasses: every data class the
// catalogue names, sorted.
func (a *API) dataClasses(w http.ResponseWriter, r *http.Request) int {
	cs, v, err := a.svc.DataClasses(r.Context())
	if err != nil {
		return writeError(w, a.log, "dataclasses", err)
	}
	if cs == nil {
		cs = []string{}
	}
	setVersion(w, v)
	writeJSON(w, http.StatusOK, cs)
	return http.StatusOK
}

// latestBreach answers GET /api/v3/latestbreach: the breach added last.
func (a *API) latestBreach(w http.ResponseWriter, r *http.Request) int {
	const route = "latestbreach"
	b, v, err := a.svc.LatestBreach(r.Context())
	if err != nil {
		return writeError(w, a.log, route, err)
	}
	if b == nil {
		return writeError(w, a.log, route, breachd.Errorf(breachd.ErrNotFound, "the catalogue is empty"))
	}
	setVersion(w, v)
	writeJSON(w, http.StatusOK, modelOf(b))
	return http.StatusOK
}
