// Package breachd holds the vocabulary every part of the credential-exposure
// lookup daemon shares: the account digest, the breach record and catalogue
// entry, the answers (Exposure, BatchExposure), import counts, and the kinds
// of error that cross package boundaries (errors.go), which each adapter maps
// to its own codes in one table. It has no dependencies beyond the standard
// library; use cases live in package service, storage, transport and parsing
// in their own packages.
package breachd
