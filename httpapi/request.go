package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/breachd/breachd"
)

// What a request brings besides its path is read here, whole and alike on
// both servers: its query (query) and its JSON body (decodeBody). Neither
// is ever read in part.

// params are a request's query parameters: one value each, by name in
// any case (upstream's API reads truncateResponse and truncateresponse
// alike).
type params map[string]string

// Get returns the value of the parameter name, in any case ("" if none).
func (p params) Get(name string) string {
	if len(p) == 0 {
		return "" // most requests: no query, and nothing to fold
	}
	return p[strings.ToLower(name)]
}

// query parses a request's raw query, refusing one that does not parse (a
// ';' between pairs, a bad escape) or that names a parameter twice:
// Request.URL.Query drops the pairs it cannot read and keeps every value,
// and a dropped or shadowed filter (domain=, includeUnverified=false,
// mode=ntlm) would answer another question than the one asked. Every
// route reads its query through it, on both servers.
func query(raw string) (params, error) {
	if raw == "" {
		return nil, nil
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, breachd.Errorf(breachd.ErrInvalidArgument, "the query is malformed (%v): write name=value pairs, percent-encoded, joined by ampersands", err)
	}
	p := make(params, len(q))
	for _, name := range slices.Sorted(maps.Keys(q)) { // the same error for the same query
		vs := q[name]
		key := strings.ToLower(name)
		if _, twice := p[key]; twice || len(vs) > 1 {
			return nil, breachd.Errorf(breachd.ErrInvalidArgument, "the query names %s more than once: give each parameter once", breachd.Quote(name))
		}
		p[key] = vs[0]
	}
	return p, nil
}

// decodeBody reads one JSON value from body (at most limit bytes) into v.
// What follows it (a second object, stray bytes) is an error, not ignored:
// a body read in part answers a request other than the one sent, and a
// proxy that read the rest would disagree about what was asked. With
// strict, so is a field v does not have.
func decodeBody(body io.Reader, limit int64, v any, strict bool) error {
	dec := json.NewDecoder(io.LimitReader(body, limit))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("more follows the JSON object")
	}
	return nil
}
