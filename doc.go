// Package breachd holds the domain types shared by every part of the
// credential-exposure lookup daemon: the account digest, the breach record and
// the errors that cross package boundaries. It has no dependencies beyond the
// standard library; storage, transport and parsing live in their own packages.
package breachd
