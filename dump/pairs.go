package dump

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
)

// Combolists: one account and its password a row, for a pair import.
//
//   - FormatCombo: "email:password" lines (the first ':' separates them; a
//     password may contain ':'), as credential-stuffing lists are shared,
//     or with ';', '|', a tab or a comma, as the first line has it;
//   - FormatCSV with Options.PasswordColumn: a header naming the email and
//     password columns;
//   - FormatJSONL with Options.PasswordColumn: one JSON object a line, the
//     email and the password strings at their paths (a database's dump);
//   - FormatPairHashes: "hex SHA-256 of the canonical email:hex SHA-1 of the
//     password" lines, for pairs hashed before they reach breachd.
//
// A row that is none of these (no separator, an empty password, a value
// that is not one address) is rejected with its line number, never stored.

// PairOptions configure a combolist reader.
type PairOptions struct {
	Format Format // FormatAuto, FormatCombo, FormatCSV, FormatJSONL or FormatPairHashes
	// Column and PasswordColumn name the CSV columns: "email" and
	// "password" by default.
	Column, PasswordColumn string
}

// NewPairReader returns a Reader of a combolist, positioned at its first
// data row; read it with ReadPairs.
func NewPairReader(r io.Reader, opts PairOptions) (*Reader, error) {
	if opts.PasswordColumn == "" {
		opts.PasswordColumn = "password"
	}
	switch opts.Format {
	case FormatAuto, FormatCombo, FormatCSV, FormatJSONL, FormatPairHashes:
	default:
		return nil, fmt.Errorf("format %s holds no passwords: want auto, combo, csv, jsonl or pair-hashes", opts.Format)
	}
	rd, err := newReader(r, Options{Format: opts.Format, Column: opts.Column}, opts.PasswordColumn)
	if err != nil {
		return nil, err
	}
	if rd.format == FormatCSV && rd.pwCol < 0 {
		return nil, noColumnFlag(rd.header, opts.PasswordColumn, "--password-column", "the password", "pass")
	}
	return rd, nil
}

// detectPairs tells a combolist's format from its first non-blank line.
func detectPairs(first []byte, column, pwColumn string) Format {
	if t := bytes.TrimSpace(first); len(t) > 0 && t[0] == '{' && json.Valid(t) {
		return FormatJSONL
	}
	if a, b, ok := bytes.Cut(bytes.TrimSpace(first), []byte{':'}); ok && len(a) == 2*breachd.DigestSize && len(b) == 2*breachd.PasswordSHA1Size {
		if _, err := hex.DecodeString(string(a) + string(b)); err == nil {
			return FormatPairHashes
		}
	}
	if _, named, _ := headerSeparator(first, column, pwColumn); named {
		return FormatCSV
	}
	return FormatCombo
}

// comboSeparator tells a combolist's separator from its first line: the
// byte right after its address's domain, if it is ':' (the usual one),
// ';', '|', a tab or a comma; else ':'. A domain holds only letters,
// digits, '-', '.' and non-ASCII letters, so the byte that ends it is the
// separator, and a password that holds the same byte further on is still
// read whole (each row is cut at its first separator after the '@'). Decided
// once, for the whole file, as a CSV's separator is from its header.
func comboSeparator(first []byte) string {
	at := bytes.IndexByte(first, '@')
	if at < 0 {
		return ":"
	}
	for _, c := range first[at+1:] {
		switch {
		case c >= 0x80, 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.':
			continue
		case c == ':', c == ';', c == '|', c == '\t', c == ',':
			return string(c)
		}
		break
	}
	return ":"
}

// ReadPairs fills dst (up to its capacity) with the pairs of accepted rows
// and returns it; io.EOF, with no pairs, at the end. Rejected rows are
// counted and reported to OnReject.
func (r *Reader) ReadPairs(dst []breachd.PairRecord) ([]breachd.PairRecord, error) {
	return readParallel(r, dst, r.parsePair)
}

// parsePair turns one combolist row into a pair, or a reason it was rejected.
func (r *Reader) parsePair(line string, scratch []string) (breachd.PairRecord, []string, string) {
	var p breachd.PairRecord
	var account, password string
	switch r.format {
	case FormatCSV:
		fields, reason := splitCSVReason(line, r.sep, scratch[:0])
		scratch = fields
		if reason != "" {
			return p, scratch, reason
		}
		if r.col >= len(fields) || r.pwCol >= len(fields) {
			return p, scratch, fmt.Sprintf("missing email or password column: row has %d fields", len(fields))
		}
		account, password = fields[r.col], fields[r.pwCol]
	case FormatJSONL:
		var reason string
		if account, reason = jsonField(line, r.jsonCol); reason != "" {
			return p, scratch, reason
		}
		if password, reason = jsonField(line, r.jsonPw); reason != "" {
			return p, scratch, reason
		}
	default:
		// Cut at the first separator after the address's '@': a local
		// part may hold '|' (or, quoted, anything), a domain none.
		at := max(strings.IndexByte(line, '@'), 0)
		a, b, ok := strings.Cut(line[at:], r.comboSep)
		a = line[:at] + a
		if !ok {
			sep := "'" + r.comboSep + "'"
			if r.comboSep == "\t" {
				sep = "tab"
			}
			return p, scratch, "no " + sep + " between the account and its password"
		}
		account, password = a, b
	}
	if password == "" {
		return p, scratch, "empty password"
	}
	var err error
	if r.format == FormatPairHashes {
		if p.Account, err = breachd.ParseDigest(strings.TrimSpace(account)); err != nil {
			return p, scratch, err.Error()
		}
		h, err := hex.DecodeString(strings.TrimSpace(password))
		if err != nil || len(h) != breachd.PasswordSHA1Size {
			return p, scratch, "the password is not 40 hex digits (a SHA-1)"
		}
		copy(p.Password[:], h)
		return p, scratch, ""
	}
	if p.Account, err = canon.Digest(account); err != nil {
		return p, scratch, err.Error()
	}
	p.Password = sha1.Sum([]byte(password))
	return p, scratch, ""
}
