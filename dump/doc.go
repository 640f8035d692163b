// Package dump reads what is imported: breach dumps, password dumps and
// manifests. A breach dump is a CSV file with a named email column (its
// fields separated by commas, or by semicolons or tabs, as its header's
// are), JSON Lines with a named email field, a list of emails one per
// line, or a list of hex SHA-256 digests one per line, optionally
// compressed (gzip, zstd, bzip2 or xz), in UTF-8 or UTF-16 with a byte
// order mark, its lines ended by LF, CRLF or CR alone; archives and
// documents (.xls, PDF) are refused up front, saying what
// to do. The reader turns each row into an account
// digest or a rejection with its line number and reason, and nothing else
// from a dump (names, dates of birth, passwords) leaves it. A password dump
// is HASH:COUNT lines (one file, or a directory of per-prefix files, as the
// Pwned Passwords downloader writes them) or a plain list of passwords,
// hashed as they are read and never kept. A manifest is a breach's (or a
// release's) record in Have I Been Pwned's breach model.
//
// Dumps are large, so their lines are parsed on every core: one goroutine
// cuts the text into blocks of whole lines, which others parse, in order.
// Reader.Read, ReadPairs and PasswordReader.Read do it themselves
// (parallel.go; Close stops them); Reader.ReadBlock and Rows hand the
// blocks to a bulk checker, which hashes on its own workers. A row is a
// line, even in CSV, so a cut needs no parser state.
//
// Open and Stdin open what the commands read: a file, or standard input,
// whose reads end when the command is interrupted even if the pipe, named
// pipe or terminal it reads has nothing to say (input.go). Such an input
// tells when it is idle (Idle), and ReadBlock then cuts a block at the
// whole lines it has (Block.Stalled): a bulk checker answers a live feed at
// each of its pauses.
package dump
