// Package blind is the client's side of a private check
// (docs/PRIVATE-LOOKUP.md): it blinds an account's digest for the server's
// oblivious PRF (RFC 9497, ristretto255-SHA512, with cloudflare/circl),
// takes the digest's bucket prefix, and unblinds the server's evaluation
// into the value to look for among the bucket's. The digest never leaves
// the client; the server learns only the prefix.
package blind
