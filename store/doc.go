// Package store owns the breach corpus at rest: account digests and their
// breach membership in Badger, guarded by a Bloom filter (bits-and-blooms'
// bloom/v3) that answers the common "not exposed" case without touching
// Badger. It is the only package that imports Badger or the Bloom filter, and
// it implements service.Store: it speaks breachd's vocabulary and errors.
//
// Answers are exact. The published filter holds every digest of every
// committed breach, so a "no" from it is final; a "maybe" is confirmed in
// the lookup index (index.go: a sorted, memory-mapped copy of every digest
// and its membership, rebuilt after imports) while it is current, and in
// Badger, the store of record, otherwise. Published filters and catalogues are immutable: an import writes
// its rows under a new, pending segment id that lookups ignore, adds its
// digests to a private copy of the filter, and its commit publishes the
// filter and then the catalogue, each in one atomic store. A breach becomes
// visible all at once, after every row is stored, while lookups go on being
// answered without locks.
package store
