// Package quota owns how much each principal may ask of breachd: a token
// bucket per principal (golang.org/x/time/rate) with its own rate and burst
// or the daemon's defaults, charged 1 per call and 1 per digest of a bulk
// batch, and a cap on each principal's concurrent streams. Refusals are of
// kind breachd.ErrQuotaExceeded and say when to retry (RetryAfter), for the
// adapters to pass on (gRPC RetryInfo, HTTP Retry-After).
package quota
