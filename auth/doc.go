// Package auth owns who may call breachd and what they may do: scopes
// (check, bulk, admin), principals (a named identity with scopes and a
// quota), API keys kept as SHA-256 hashes in a file beside the corpus
// (keys.json, changed by 'breachd keys' while a daemon runs and re-read by it
// within seconds), the mapping of mTLS client certificates to principals,
// and the one admission policy (policy.go): for each use case, the scope it
// needs, what it costs, whether it may be public, whether it is audited.
// It knows no transport: the gRPC adapter (and any later face) asks an
// Authenticator and maps its errors, of breachd's kinds, to its own codes.
package auth
