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
//     password may contain ':'), as credential-stuffing lists are shared;
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
		a, b, ok := strings.Cut(line, ":")
		if !ok {
			return p, scratch, "no ':' between the account and its password"
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
