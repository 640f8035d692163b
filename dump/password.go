package dump

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
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
// directory of files (read in name order), or a stream.
type PasswordReader struct {
	kind   breachd.HashKind
	format PasswordFormat
	files  []string // still to open, for a directory
	src    io.Reader
	sc     *bufio.Scanner
	closer io.Closer
	name   string // the file being read, for messages
	prefix []byte // its 5-character prefix, from its name, if any
	line   int64
	stats  Stats
	// OnReject, if set, is called for each rejected line with the file,
	// its line number and why. The line itself is never passed on.
	OnReject func(file string, line int64, reason string)
}

// NewPasswordReader reads path (a file, "-" for r, or a directory of
// files). Gzip is detected in each file.
func NewPasswordReader(path string, r io.Reader, k breachd.HashKind, f PasswordFormat) (*PasswordReader, error) {
	pr := &PasswordReader{kind: k, format: f}
	switch fi, err := os.Stat(path); {
	case path == "-":
		pr.src, pr.name = r, "stdin"
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
	default:
		pr.files = []string{path}
	}
	return pr, nil
}

// Stats returns what has been read so far.
func (pr *PasswordReader) Stats() Stats { return pr.stats }

// Close closes the file being read.
func (pr *PasswordReader) Close() error {
	if pr.closer != nil {
		err := pr.closer.Close()
		pr.closer = nil
		return err
	}
	return nil
}

// open moves to the next file; io.EOF when none is left.
func (pr *PasswordReader) open() error {
	pr.Close()
	var in io.Reader
	switch {
	case pr.src != nil:
		in, pr.src = pr.src, nil
	case len(pr.files) > 0:
		f, err := os.Open(pr.files[0])
		if err != nil {
			return err
		}
		pr.name, pr.files, pr.closer, in = pr.files[0], pr.files[1:], f, f
		pr.prefix = nil
		base := filepath.Base(pr.name)
		if stem := base[:len(base)-len(filepath.Ext(base))]; len(stem) == breachd.PrefixHexLen && isHex([]byte(stem)) {
			pr.prefix = bytes.ToUpper([]byte(stem))
		}
	default:
		return io.EOF
	}
	br, err := gunzipped(in)
	if err != nil {
		return fmt.Errorf("%s: %w", pr.name, err)
	}
	pr.sc = bufio.NewScanner(br)
	pr.sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	pr.line = 0
	return nil
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
// OnReject and skipped; a read error ends the dump.
func (pr *PasswordReader) Read(dst []breachd.PasswordRecord) ([]breachd.PasswordRecord, error) {
	dst = dst[:0]
	for len(dst) < cap(dst) {
		if pr.sc == nil {
			if err := pr.open(); err != nil {
				return dst, err
			}
		}
		if !pr.sc.Scan() {
			err := pr.sc.Err()
			pr.sc = nil
			if errors.Is(err, bufio.ErrTooLong) {
				return dst, fmt.Errorf("%s: line %d is longer than %d bytes: is this a password dump?", pr.name, pr.line+1, MaxLineBytes)
			}
			if err != nil {
				return dst, fmt.Errorf("%s: %w", pr.name, err)
			}
			continue
		}
		pr.line++
		line := bytes.TrimSuffix(pr.sc.Bytes(), []byte{'\r'})
		if pr.format == PasswordHashes {
			line = bytes.TrimSpace(line)
		}
		if len(line) == 0 {
			continue
		}
		pr.stats.Rows++
		var rec breachd.PasswordRecord
		var reason string
		if pr.format == PasswordPlain {
			rec, reason = pr.plain(line)
		} else {
			rec, reason = pr.hashLine(line)
		}
		switch {
		case reason == "padding":
			pr.stats.Rows-- // a count of 0: padding, not a row
		case reason != "":
			pr.stats.Rejected++
			if pr.OnReject != nil {
				pr.OnReject(pr.name, pr.line, reason)
			}
		default:
			pr.stats.Accepted++
			dst = append(dst, rec)
		}
	}
	return dst, nil
}

// hashLine parses HASH[:COUNT], or SUFFIX[:COUNT] in a per-prefix file.
func (pr *PasswordReader) hashLine(line []byte) (breachd.PasswordRecord, string) {
	var rec breachd.PasswordRecord
	hash, count, hasCount := bytes.Cut(line, []byte{':'})
	want := 2 * pr.kind.Size()
	if len(hash) == want-breachd.PrefixHexLen && pr.prefix != nil {
		hash = append(slices.Clone(pr.prefix), hash...)
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
