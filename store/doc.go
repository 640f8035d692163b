// Package store owns the breach corpus at rest: account digests and their
// breach membership in Badger, guarded by a Bloom filter that answers the
// common "not exposed" case without touching Badger. It is the only package
// that imports Badger or the Bloom filter.
//
// Answers are exact. The filter contains every stored digest at all times (a
// digest is added to it before it is written), so a "no" from the filter is
// final; a "maybe" is confirmed in Badger.
//
// An import writes its rows under a new, pending segment id. Lookups ignore
// segments that are not committed, and committing swaps in a new in-memory
// catalogue in one atomic store, so a breach becomes visible all at once,
// after every row is stored, while lookups go on being answered.
package store
