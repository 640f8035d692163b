package dump

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	//lint:ignore SA1019 NTLM is MD4 by definition: compatibility with Windows' hashes is the point, not security
	"golang.org/x/crypto/md4"

	"github.com/breachd/breachd"
)

// PasswordFormat is the shape of a password dump.
type PasswordFormat int

const (
	// PasswordHashes is Pwned Passwords' shape: HASH:COUNT lines (a
	// missing count is 1), or SUFFIX:COUNT lines in a file named after
	// its 5-character prefix, as the downloader writes per-prefix files.
	PasswordHashes PasswordFormat = iota
	// PasswordPlain is one password per line, hashed as it is read and
	// never kept; a password repeated counts once per line.
	PasswordPlain
)

// ParsePasswordFormat parses "hashes" or "plain".
func ParsePasswordFormat(s string) (PasswordFormat, error) {
	switch s {
	case "hashes":
		return PasswordHashes, nil
	case "plain":
		return PasswordPlain, nil
	}
	return 0, fmt.Errorf("unknown password format %q: want hashes or plain", s)
}

// PasswordReader reads password records of one kind from a file, a
// directory of files (read in name order), or a stream. Its lines are
// parsed on every core and handed out in order: a Pwned Passwords download
// is a billion lines, and the import that writes them is one goroutine.
type PasswordReader struct {
	kind       breachd.HashKind
	format     PasswordFormat
	files      []string  // to read, for a path; nil for a stream
	src        io.Reader // the stream read, if not files
	srcName    string    // its name in messages
	srcCloser  io.Closer // closes src, if the reader opened it
	blockBytes int
	buf        *bufio.Reader // reads each file in turn

	// Set by the first Read, which starts the goroutines that cut and
	// parse blocks (parallel.go); Close stops them.
	par    *parallel[*passwordBlock, breachd.PasswordRecord]
	closed bool

	stats Stats
	// OnReject, if set, is called for each rejected line with the file,
	// its line number and why, in the dump's order, from Read's goroutine.
	// The line itself is never passed on.
	OnReject func(file string, line int64, reason string)
}

// passwordBlock is a run of whole lines of one file.
type passwordBlock struct {
	name   string // the file, for messages
	prefix []byte // its 5-character prefix, from its name, if any
	cut
}

// NewPasswordReader reads path: a file, a directory of files, or "-" for
// r, or for standard input if r is nil. Standard input and a path that is
// neither a regular file nor a directory (a named pipe) are opened with
// Stdin and Open: their reads, and a FIFO's wait for a writer, end when
// ctx does. Compression (gzip, zstd, bzip2) and UTF-16 with a byte order
// mark are detected in each file, and a UTF-8 byte order mark dropped.
func NewPasswordReader(ctx context.Context, path string, r io.Reader, k breachd.HashKind, f PasswordFormat) (*PasswordReader, error) {
	pr := &PasswordReader{kind: k, format: f, blockBytes: parseBlockBytes}
	switch fi, err := os.Stat(path); {
	case path == "-" && r != nil:
		pr.src, pr.srcName = r, "stdin"
	case path == "-":
		in := Stdin(ctx)
		pr.src, pr.srcName, pr.srcCloser = in, "stdin", in
	case err != nil:
		return nil, err
	case fi.IsDir():
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.Type().IsRegular() {
				pr.files = append(pr.files, filepath.Join(path, e.Name()))
			}
		}
		slices.Sort(pr.files)
		if len(pr.files) == 0 {
			return nil, fmt.Errorf("%s: no files in the directory", path)
		}
	case !fi.Mode().IsRegular():
		in, _, err := Open(ctx, path)
		if err != nil {
			return nil, err
		}
		pr.src, pr.srcName, pr.srcCloser = in, path, in
	default:
		pr.files = []string{path}
	}
	return pr, nil
}

// Stats returns what has been read so far.
func (pr *PasswordReader) Stats() Stats { return pr.stats }

// Close stops reading, and closes the file being read.
func (pr *PasswordReader) Close() error {
	if pr.par != nil && !pr.closed {
		pr.par.close()
	}
	if pr.srcCloser != nil && !pr.closed {
		pr.srcCloser.Close()
	}
	pr.closed = true
	return nil
}

// cutAll cuts every file into blocks and sends them, until the end, an
// error or Close. A block that carries an error is the last.
func (pr *PasswordReader) cutAll(send func(*passwordBlock, error) bool) {
	for {
		f, err := pr.open()
		if err == io.EOF {
			return
		}
		if err != nil {
			send(&passwordBlock{}, err)
			return
		}
		if !pr.cutFile(f, send) {
			return
		}
	}
}

// cutFile cuts one file into blocks and sends them, and closes it. It
// reports whether the dump goes on.
func (pr *PasswordReader) cutFile(f *passwordFile, send func(*passwordBlock, error) bool) bool {
	defer f.close()
	for {
		b := &passwordBlock{name: f.name, prefix: f.prefix}
		var err error
		b.cut, err = f.cut(pr.blockBytes)
		if err == io.EOF {
			return true
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", f.name, err)
		}
		if !send(b, err) || err != nil {
			return false
		}
	}
}

// passwordFile is one file of a dump being cut into blocks.
type passwordFile struct {
	name   string // for messages
	prefix []byte // its 5-character prefix, from its name, if any
	lines
	file *os.File // nil for the stream
}

func (f *passwordFile) close() {
	if f.file != nil {
		f.file.Close()
	}
}

// open opens the next file, decompressed; io.EOF when none is left.
func (pr *PasswordReader) open() (*passwordFile, error) {
	f := &passwordFile{}
	var in io.Reader
	switch {
	case pr.src != nil:
		f.name, in, pr.src = pr.srcName, pr.src, nil
	case len(pr.files) > 0:
		file, err := os.Open(pr.files[0])
		if err != nil {
			return nil, err
		}
		f.name, pr.files, in, f.file = pr.files[0], pr.files[1:], file, file
		base := filepath.Base(f.name)
		if stem := base[:len(base)-len(filepath.Ext(base))]; len(stem) == breachd.PrefixHexLen && isHex([]byte(stem)) {
			f.prefix = bytes.ToUpper([]byte(stem))
		}
	default:
		return nil, io.EOF
	}
	// One buffer for every file: a Pwned Passwords download is a million
	// files of 30 KB, and a buffer of its own each cost 256 KiB of
	// zeroing a file (the import's time, four times over).
	if pr.buf == nil {
		pr.buf = bufio.NewReaderSize(in, 256<<10)
	} else {
		pr.buf.Reset(in)
	}
	var err error
	if f.br, err = decompress(pr.buf); err != nil {
		f.close()
		return nil, fmt.Errorf("%s: %w", f.name, err)
	}
	// A list saved as "Unicode" text: hashed as it is, every password
	// would be its bytes with a NUL between each two, found by no client;
	// one whose lines end in CR alone would be one password.
	f.br = text(f.br)
	return f, nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Read fills dst (up to its capacity) with the next records and returns
// them; io.EOF after the last. Malformed lines are counted, reported to
// OnReject and skipped; a read error, or a line longer than MaxLineBytes,
// ends the dump.
func (pr *PasswordReader) Read(dst []breachd.PasswordRecord) ([]breachd.PasswordRecord, error) {
	if pr.closed {
		return dst[:0], errClosed
	}
	if pr.par == nil {
		pr.par = startParallel(pr.cutAll, pr.parse)
	}
	return pr.par.read(dst, func(b *parsed[*passwordBlock, breachd.PasswordRecord]) {
		pr.stats.Rows += b.rows
		pr.stats.Accepted += int64(len(b.items))
		pr.stats.Rejected += int64(len(b.rejs))
		if pr.OnReject != nil {
			for _, r := range b.rejs {
				pr.OnReject(b.in.name, r.line, r.reason)
			}
		}
	})
}

// parse turns a block's lines into records and rejections. A line longer
// than MaxLineBytes ends the dump there: a password dump has none.
func (pr *PasswordReader) parse(p *parsed[*passwordBlock, breachd.PasswordRecord]) {
	b := p.in
	defer b.release()
	tooLong := func(line int64) error {
		return fmt.Errorf("%s: line %d is longer than %d bytes: is this a password dump?", b.name, line, MaxLineBytes)
	}
	if b.long > 0 {
		p.err = tooLong(b.long)
		return
	}
	if p.items == nil {
		p.items = make([]breachd.PasswordRecord, 0, b.lines+1)
	}
	text, n := b.text, b.line
	for len(text) > 0 {
		var line []byte
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i+1], text[i+1:]
		} else {
			line, text = text, nil
		}
		n++
		if len(line) > MaxLineBytes {
			p.err = tooLong(n)
			return
		}
		// A line ending is a newline after up to two carriage returns.
		line = bytes.TrimSuffix(line, []byte{'\n'})
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\r'}), []byte{'\r'})
		if pr.format == PasswordHashes {
			line = bytes.TrimSpace(line)
		}
		if len(line) == 0 {
			continue
		}
		var rec breachd.PasswordRecord
		var reason string
		if pr.format == PasswordPlain {
			rec, reason = pr.plain(line)
		} else {
			rec, reason = pr.hashLine(b.prefix, line)
		}
		switch reason {
		case "padding": // a count of 0: padding, not a row
		case "":
			p.rows++
			p.items = append(p.items, rec)
		default:
			p.rows++
			p.rejs = append(p.rejs, rejectedRow{n, reason})
		}
	}
}

// hashLine parses HASH[:COUNT], or SUFFIX[:COUNT] in a per-prefix file.
func (pr *PasswordReader) hashLine(prefix, line []byte) (breachd.PasswordRecord, string) {
	var rec breachd.PasswordRecord
	hash, count, hasCount := bytes.Cut(line, []byte{':'})
	want := 2 * pr.kind.Size()
	var full [2 * breachd.MaxPasswordHashSize]byte
	if len(hash) == want-breachd.PrefixHexLen && prefix != nil {
		hash = append(append(full[:0], prefix...), hash...)
	}
	if len(hash) != want {
		return rec, fmt.Sprintf("a %s hash has %d hex characters, this one %d", pr.kind, want, len(hash))
	}
	if _, err := hex.Decode(rec.Hash[:pr.kind.Size()], hash); err != nil {
		return rec, "the hash is not hex"
	}
	rec.Count = 1
	if hasCount {
		n, err := strconv.ParseUint(string(count), 10, 64)
		switch {
		case err != nil || n > breachd.MaxPasswordCount:
			return rec, fmt.Sprintf("the count is not a whole number from 0 to %d", uint64(breachd.MaxPasswordCount))
		case n == 0:
			return rec, "padding"
		}
		rec.Count = n
	}
	return rec, ""
}

// plain hashes a password line: SHA-1 of its bytes, or NTLM (MD4 of its
// UTF-16LE form, which needs valid UTF-8).
func (pr *PasswordReader) plain(line []byte) (breachd.PasswordRecord, string) {
	rec := breachd.PasswordRecord{Count: 1}
	switch pr.kind {
	case breachd.SHA1:
		h := sha1.Sum(line)
		copy(rec.Hash[:], h[:])
	case breachd.NTLM:
		if !utf8.Valid(line) {
			return rec, "not valid UTF-8: an NTLM hash needs the password's characters"
		}
		rec.Hash = NTLM(line)
	}
	return rec, ""
}

// NTLM returns the NT hash of a password given in UTF-8: MD4 of its
// UTF-16LE encoding, in the first 16 bytes.
func NTLM(password []byte) [breachd.MaxPasswordHashSize]byte {
	u := utf16.Encode([]rune(string(password)))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		b[2*i], b[2*i+1] = byte(c), byte(c>>8)
	}
	m := md4.New()
	m.Write(b)
	var out [breachd.MaxPasswordHashSize]byte
	copy(out[:], m.Sum(nil))
	return out
}
