// Package store owns the corpora at rest: one engine (engine.go) over Badger
// and a Bloom filter (bits-and-blooms' bloom/v3), and the kinds that run on
// it (kind.go): emails (account digests and the breaches each is in: Store)
// and password hashes with their counts (SHA-1 and NTLM: Passwords). A kind
// is a small codec: the key's size, what an entry of a row carries, how the
// filter reads a key, how a first import is loaded, whether a lookup index
// serves it. It is the only package that imports Badger or the Bloom filter;
// it speaks breachd's vocabulary and errors, and implements service.Store
// and service.PasswordCorpus.
//
// Answers are exact. The published filter holds every key of every
// committed breach, so a "no" from it is final; a "maybe" is confirmed in
// the lookup index (index.go: a sorted, memory-mapped copy of every digest
// and its membership) while it is current, and in Badger, the store of
// record, otherwise (a password corpus's first release is a file beside
// Badger instead of its rows: base.go). Published catalogues are
// immutable, and published filters only gain bits: an import writes its
// rows under a new, pending segment id that lookups ignore (ids are never
// reused), adds its keys to the published filter in place (filter.go; a
// superset is exact, every "maybe" being confirmed), and its commit
// publishes the catalogue in one atomic store. A breach becomes visible
// all at once, after every row is stored, while lookups go on being
// answered without locks. The filter is saved whole, then as a log of the
// blocks each change set (filterlog.go). A replica's
// reads are pinned to the Badger version of the catalogue they answer for,
// so a delta it applies is visible all at once too. A read of rows or of
// the base that a change committed under (a delete's collection rewrites
// and drops what the catalogue before still names) runs again under the
// new catalogue (readStable): an answer is always its version's.
//
// A data directory holds one directory per corpus (layout.go: EmailDir,
// PasswordDir); MigrateLayout moves a corpus of the layout before 2026-12.
package store
