// Package canon owns the canonical form of an email address and its digest:
// the one rule that the importer, the daemon's clients and partners' pre-hashed
// corpora must agree on. The rule is specified in docs/canonical-email.md and
// pinned by the vectors in testdata/vectors.json.
package canon
