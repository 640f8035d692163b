// Package corpus reads breach dumps and breach manifests. A dump is a CSV file
// with a named email column, a list of emails one per line, or a list of hex
// SHA-256 digests one per line, optionally gzip-compressed. The reader turns
// each row into an account digest or a rejection with its line number and
// reason; nothing else from a dump (names, dates of birth, passwords) leaves it.
package corpus
