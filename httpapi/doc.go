// Package httpapi is breachd's HTTP face: Have I Been Pwned's API v3 and
// Pwned Passwords' range API, answered from the local corpus, so that an
// identity system that already speaks that API uses breachd by changing
// its base URL. It is an adapter over package service, as the gRPC one is:
// it parses requests, asks the use cases, writes answers in upstream's
// exact formats, and maps breachd's kinds of error to HTTP statuses in one
// table (errors.go). The same authenticator (the hibp-api-key header is a
// breachd API key, or a client certificate) and quota limiter guard it.
//
// Routes: GET /range/{prefix} (?mode=ntlm, Add-Padding), and under
// /api/v3: breachedaccount/{account}, breaches, breach/{name},
// dataclasses, latestbreach.
//
// Two servers carry it: Go's net/http (API is an http.Handler), and
// fasthttp (API.Fast), which answers the range route on its own request
// and passes every other route to the same http.Handler. Both go through
// one guard (admit, over a request view), one range answer (rangeAnswer),
// one reading of queries and JSON bodies (request.go) and one set of
// metrics.
package httpapi
