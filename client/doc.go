// Package client is the Go client library of breachd, for signup services,
// SSO integrations and bulk sweeps. It canonicalises and hashes addresses
// locally (package canon), so no email address ever leaves the caller, and
// wraps the generated gRPC stubs with plain Go results, safe retries and a
// pipelined bulk call.
package client
