package dump

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
)

// Format is the shape of a dump.
type Format int

const (
	// FormatAuto detects the format from the first non-blank line.
	FormatAuto Format = iota
	// FormatCSV is comma-separated with a header row naming the columns;
	// a header whose fields are separated by semicolons or tabs instead
	// (a spreadsheet's export in many locales, a TSV) sets the separator
	// of every row.
	FormatCSV
	// FormatEmails is one email address per line.
	FormatEmails
	// FormatSHA256 is one hex SHA-256 digest of a canonical email per line.
	FormatSHA256
	// FormatCombo is one "email:password" per line (pairs.go).
	FormatCombo
	// FormatPairHashes is one "hex SHA-256 of the email:hex SHA-1 of the
	// password" per line (pairs.go).
	FormatPairHashes
	// FormatJSONL is one JSON object per line (JSON Lines, a database's
	// export), the email the string of its field named as a CSV's column
	// is (Options.Column): a dotted path for a nested one.
	FormatJSONL
)

func (f Format) String() string {
	switch f {
	case FormatCSV:
		return "csv"
	case FormatEmails:
		return "emails"
	case FormatSHA256:
		return "sha256"
	case FormatCombo:
		return "combo"
	case FormatPairHashes:
		return "pair-hashes"
	case FormatJSONL:
		return "jsonl"
	}
	return "auto"
}

// ParseFormat parses a --format value.
func ParseFormat(s string) (Format, error) {
	for _, f := range []Format{FormatAuto, FormatCSV, FormatEmails, FormatSHA256, FormatJSONL, FormatCombo, FormatPairHashes} {
		if s == f.String() {
			return f, nil
		}
	}
	return 0, fmt.Errorf("unknown format %q: want auto, csv, emails, sha256, jsonl, or for pairs combo or pair-hashes", s)
}

// MaxLineBytes is the longest line a dump may have; longer lines are rejected.
const MaxLineBytes = 64 << 10

// Options configure a Reader.
type Options struct {
	Format Format
	// Column names the CSV column that holds the email. Default "email".
	Column string
}

// Stats counts what a Reader has read.
type Stats struct {
	Rows     int64 // non-blank data rows (the CSV header is not a row)
	Accepted int64
	Rejected int64
}

// Reader reads account digests from a dump.
type Reader struct {
	lines
	opts   Options
	format Format
	col    int // CSV: index of the email column
	pwCol  int // a combolist's CSV: index of the password column, -1 if none
	header []string
	sep    byte // a CSV's field separator: ',', ';' or '\t'
	// JSON Lines: where a row's email is, and a combolist's password
	jsonCol, jsonPw jsonPath
	comboSep        string // a combolist's separator (comboSeparator)
	pairs           bool   // a combolist (NewPairReader)
	stats           Stats
	peeked          []byte // first non-blank line, read during detection
	// long holds the numbers of over-long lines met before the first
	// usable one, during detection; they are rejected as the first rows.
	long   []int64
	longAt int64 // number of the over-long line nextRow just skipped
	// OnReject, if set, is called for each rejected row, in the dump's
	// order, from the goroutine that calls Read (or ReadPairs): a block's
	// rejections as Read takes the block, before its items. Reasons
	// never contain the row's content.
	OnReject func(line int64, reason string)

	// The first Read (or ReadPairs) starts the goroutines that cut and
	// parse the dump (parallel.go): par is their *parallel[*Block, T], T
	// the items read, and Close stops them.
	par        interface{ close() }
	closed     bool
	blockBytes int // the size of the blocks cut
}

// ErrNoColumn is returned when a CSV header lacks the email column.
var ErrNoColumn = errors.New("no email column")

// ErrNotText is returned for input that is not text: an archive (ZIP,
// 7-Zip, RAR, tar) or a document (.xls, PDF).
var ErrNotText = errors.New("not a text dump")

// NewReader detects compression and format, reads the CSV header if any, and
// returns a Reader positioned at the first data row.
func NewReader(r io.Reader, opts Options) (*Reader, error) {
	if opts.Format == FormatCombo || opts.Format == FormatPairHashes {
		return nil, fmt.Errorf("format %s is a combolist's: import it with --kind pairs", opts.Format)
	}
	return newReader(r, opts, "")
}

// newReader is NewReader, or with pwColumn set NewPairReader's.
func newReader(r io.Reader, opts Options, pwColumn string) (*Reader, error) {
	if opts.Column == "" {
		opts.Column = "email"
	}
	plain := bufio.NewReaderSize(r, 256<<10)
	br, err := decompress(plain)
	if err != nil {
		return nil, err
	}
	br = text(br)
	var idle func() bool
	if i, ok := r.(Idle); ok && br == plain { // not through gzip's buffers
		idle = i.Idle
	}
	rd := &Reader{lines: lines{br: br, idle: idle}, opts: opts, format: opts.Format, sep: ',', comboSep: ":", pwCol: -1, pairs: pwColumn != "", blockBytes: parseBlockBytes}
	first, err := rd.nextLine()
	for err == errLongLine {
		if rd.format == FormatCSV {
			return nil, fmt.Errorf("line %d: the CSV header is longer than 64 KiB", rd.line)
		}
		// Not a row anyone could mean: reject it and detect the format
		// from the next line.
		rd.long = append(rd.long, rd.line)
		first, err = rd.nextLine()
	}
	if err == io.EOF {
		return rd, nil // an empty dump, or only over-long lines: nothing to read
	}
	if err != nil {
		return nil, fmt.Errorf("line %d: %w", rd.line, err)
	}
	// Excel's "sep=;" line names the separator of the CSV after it (an
	// export meant to open in Excel whatever its locale).
	sep, sepLine := excelSeparator(first)
	if sepLine && (rd.format == FormatAuto || rd.format == FormatCSV) {
		if first, err = rd.nextLine(); err != nil {
			if err == io.EOF || err == errLongLine {
				return nil, fmt.Errorf("line %d: a %q line with no CSV header after it", rd.line, "sep="+string(sep))
			}
			return nil, fmt.Errorf("line %d: %w", rd.line, err)
		}
		rd.format = FormatCSV
	} else {
		sepLine = false
	}
	if rd.format == FormatAuto && rd.pairs {
		rd.format = detectPairs(first, opts.Column, pwColumn)
	} else if rd.format == FormatAuto {
		rd.format = detect(first, opts.Column)
	}
	if rd.format == FormatCombo {
		rd.comboSep = comboSeparator(first)
	}
	if rd.format == FormatCSV {
		rd.sep = sep
		if !sepLine {
			rd.sep, _, _ = headerSeparator(first, opts.Column, pwColumn)
		}
		fields, ok := splitCSV(first, rd.sep, nil)
		if !ok {
			return nil, fmt.Errorf("line %d: malformed CSV header", rd.line)
		}
		rd.col, rd.header = -1, fields
		for i, f := range fields {
			if rd.col < 0 && strings.EqualFold(strings.TrimSpace(f), opts.Column) {
				rd.col = i
			}
			if rd.pwCol < 0 && rd.pairs && strings.EqualFold(strings.TrimSpace(f), pwColumn) {
				rd.pwCol = i
			}
		}
		if rd.col < 0 {
			return nil, noColumn(fields, opts.Column)
		}
		return rd, nil
	}
	if rd.format == FormatJSONL {
		rd.jsonCol = newJSONPath(opts.Column, first)
		// The first object is a row; it must have the field (and a
		// combolist's, the password's), or every row would be rejected.
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(first, &keys); err != nil {
			return nil, fmt.Errorf("line %d: malformed JSON: not one object", rd.line)
		}
		if !jsonHas(first, rd.jsonCol) {
			return nil, noField(slices.Sorted(maps.Keys(keys)), opts.Column, "--column", "the address", "mail", jsonHint(first, opts.Column))
		}
		if rd.pairs {
			rd.jsonPw = newJSONPath(pwColumn, first)
			if !jsonHas(first, rd.jsonPw) {
				return nil, noField(slices.Sorted(maps.Keys(keys)), pwColumn, "--password-column", "the password", "pass", jsonHint(first, pwColumn))
			}
		}
	}
	rd.peeked = first
	return rd, nil
}

// Format returns the format being read (detected, if it was FormatAuto).
func (r *Reader) Format() Format { return r.format }

// Stats returns the counts so far.
func (r *Reader) Stats() Stats { return r.stats }

// noColumn explains a CSV header without the email column: the columns it
// has, and the one to name with --column if one looks like an address.
func noColumn(fields []string, column string) error {
	return noColumnFlag(fields, column, "--column", "the address", "mail")
}

// noColumnFlag is noColumn for the column of flag, which holds what,
// suggesting the one column whose name contains like.
func noColumnFlag(fields []string, column, flag, what, like string) error {
	return noNamed("the CSV header has no column named", "its columns are", fields, column, flag, what, like)
}

// noNamed explains that what was read (has) lacks column: its fields
// (are), and the one to name with flag if one's name contains like.
func noNamed(has, are string, fields []string, column, flag, what, like string) error {
	cols := make([]string, len(fields))
	var mail []string
	for i, f := range fields {
		cols[i] = strconv.Quote(strings.TrimSpace(f))
		if strings.Contains(strings.ToLower(f), like) {
			mail = append(mail, strings.TrimSpace(f))
		}
	}
	hint := "name the column that holds " + what + " with " + flag
	if len(mail) == 1 {
		hint = "pass " + flag + " " + shellWord(mail[0])
	}
	return fmt.Errorf("%w: %s %q; %s %s: %s", ErrNoColumn, has, column, are, strings.Join(cols, ", "), hint)
}

// shellWord quotes s for a shell when it holds more than letters, digits
// and . _ - / : (a column "Email Address" is passed as 'Email Address').
func shellWord(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/:", r)) {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}

// excelSeparator reads Excel's separator line, "sep=" and one character
// (the quote, CR and LF excepted): the separator, and true, if line is one.
func excelSeparator(line []byte) (byte, bool) {
	line = bytes.TrimRight(line, " ")
	if len(line) != 5 || !bytes.EqualFold(line[:4], []byte("sep=")) || line[4] == '"' || line[4] == '\r' || line[4] == '\n' {
		return 0, false
	}
	return line[4], true
}

// separators are the field separators a CSV header may use, in the order
// they are tried.
var separators = []byte{',', ';', '\t'}

// headerSeparator returns the field separator of a CSV header, first:
// the first of separators that splits it into two or more fields one of
// which is one of names (named; empty names are none), else the first that
// splits it into two or more (split), else a comma.
func headerSeparator(first []byte, names ...string) (sep byte, named, split bool) {
	sep = ','
	for _, s := range separators {
		fields, ok := splitCSV(first, s, nil)
		if !ok || len(fields) < 2 {
			continue
		}
		if !split {
			sep, split = s, true
		}
		for _, f := range fields {
			for _, name := range names {
				if name != "" && strings.EqualFold(strings.TrimSpace(f), name) {
					return s, true, true
				}
			}
		}
	}
	return sep, false, split
}

// detect tells the format from the first non-blank line. A JSON object is
// JSON Lines. A line of two or
// more fields (separated by commas, semicolons or tabs) without an "@" is
// a CSV header, whether or not it names the email column (which NewReader
// then requires): a user-base export with another column name, or another
// separator, must fail, never be read as one address per line.
func detect(first []byte, column string) Format {
	if t := bytes.TrimSpace(first); len(t) > 0 && t[0] == '{' && json.Valid(t) {
		return FormatJSONL
	}
	if len(bytes.TrimSpace(first)) == 2*breachd.DigestSize {
		if _, err := hex.DecodeString(string(bytes.TrimSpace(first))); err == nil {
			return FormatSHA256
		}
	}
	if strings.EqualFold(string(bytes.TrimSpace(first)), column) {
		return FormatCSV // a one-column CSV: just the header
	}
	if _, named, split := headerSeparator(first, column); named || split && bytes.IndexByte(first, '@') < 0 {
		return FormatCSV
	}
	return FormatEmails
}

// nextLine returns the next non-blank line without its line ending. A line
// longer than MaxLineBytes is returned as errLongLine after skipping it.
func (r *lines) nextLine() ([]byte, error) {
	for {
		line, err := r.br.ReadSlice('\n')
		if len(line) == 0 && err != nil {
			return nil, err // io.EOF, or a read error
		}
		r.line++
		if err == bufio.ErrBufferFull || len(line) > MaxLineBytes {
			for err == bufio.ErrBufferFull {
				_, err = r.br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				return nil, err
			}
			return nil, errLongLine
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(bytes.TrimSpace(line)) == 0 {
			if err == io.EOF {
				return nil, io.EOF
			}
			continue
		}
		return line, nil
	}
}

var errLongLine = errors.New("line longer than 64 KiB")

// nextRow returns the next data row's line, or errLongLine for a line too
// long to be one (skipped), or io.EOF at the end. It does not count them:
// its callers do (Stats).
func (r *Reader) nextRow() ([]byte, error) {
	if len(r.long) > 0 {
		r.longAt, r.long = r.long[0], r.long[1:]
		return nil, errLongLine
	}
	if r.peeked != nil {
		line := r.peeked
		r.peeked = nil
		return line, nil
	}
	line, err := r.nextLine()
	switch {
	case err == errLongLine:
		r.longAt = r.line
		return nil, err
	case err == io.EOF:
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("line %d: %w", r.line, err)
	}
	return line, nil
}

// endOfBatch turns io.EOF into nil when the batch has rows: the caller sees
// the end on its next call, with an empty batch.
func endOfBatch(n int, err error) error {
	if err == io.EOF && n > 0 {
		return nil
	}
	return err
}

// Read fills dst (up to its capacity) with digests of accepted rows and
// returns it. It returns io.EOF, with no digests, at the end of the dump.
// Rejected rows are counted and reported to OnReject; they never stop a
// read. The rows are parsed on every core (parallel.go): Close stops the
// goroutines of a dump not read to its end.
func (r *Reader) Read(dst []breachd.Digest) ([]breachd.Digest, error) {
	return readParallel(r, dst, r.parse)
}

// readSerial is Read on the caller's goroutine, line by line (nextRow),
// with parse: a reading of the dump independent of the blocks', which the
// tests hold Read's and the bulk checker's against (FuzzBlocks).
func readSerial[T any](r *Reader, dst []T, parse func(line string, scratch []string) (T, []string, string)) ([]T, error) {
	dst = dst[:0]
	var fields []string
	for len(dst) < cap(dst) {
		line, err := r.nextRow()
		if err == errLongLine {
			r.stats.Rows++
			r.rejectAt(r.longAt, err.Error())
			continue
		}
		if err != nil {
			return dst, endOfBatch(len(dst), err)
		}
		r.stats.Rows++
		var x T
		var reason string
		x, fields, reason = parse(string(line), fields)
		if reason != "" {
			r.reject(reason)
			continue
		}
		r.stats.Accepted++
		dst = append(dst, x)
	}
	return dst, nil
}

func (r *Reader) reject(reason string) { r.rejectAt(r.line, reason) }

func (r *Reader) rejectAt(line int64, reason string) {
	r.stats.Rejected++
	if r.OnReject != nil {
		r.OnReject(line, reason)
	}
}

// field extracts the account field of one row, or a reason it has none.
// It reads only what NewReader decided, so any goroutine may call it.
func (r *Reader) field(line string, scratch []string) (string, []string, string) {
	if r.format == FormatJSONL {
		v, reason := jsonField(line, r.jsonCol)
		return v, scratch, reason
	}
	if r.format != FormatCSV {
		return line, scratch, ""
	}
	fields, reason := splitCSVReason(line, r.sep, scratch[:0])
	if reason != "" {
		return "", fields, reason
	}
	if r.col >= len(fields) {
		return "", fields, fmt.Sprintf("missing email column: row has %d fields", len(fields))
	}
	return fields[r.col], fields, ""
}

// parse turns one row into a digest, or a reason it was rejected. It
// reads only what NewReader decided, so any goroutine may call it.
func (r *Reader) parse(line string, scratch []string) (breachd.Digest, []string, string) {
	v, scratch, reason := r.field(line, scratch)
	if reason != "" {
		return breachd.Digest{}, scratch, reason
	}
	var d breachd.Digest
	var err error
	if r.format == FormatSHA256 {
		d, err = breachd.ParseDigest(strings.TrimSpace(v))
	} else {
		d, err = canon.Digest(v)
	}
	if err != nil {
		return d, scratch, err.Error()
	}
	return d, scratch, ""
}

// splitCSV splits one line of RFC 4180 CSV whose fields are separated by
// sep. Quoted fields may contain sep and doubled quotes but not line
// breaks: a row is a line, so one malformed row can never swallow the rows
// after it. It reports false for an unterminated quote or text after a
// closing quote.
func splitCSV(line []byte, sep byte, dst []string) ([]string, bool) {
	fields, reason := splitCSVReason(string(line), sep, dst)
	return fields, reason == ""
}

// splitCSVReason is splitCSV with the reason a line is malformed. Fields are
// substrings of line, but for quoted ones with doubled quotes.
func splitCSVReason(line string, sep byte, dst []string) ([]string, string) {
	for {
		if len(line) > 0 && line[0] == '"' {
			var b strings.Builder
			i := 1
			for {
				j := strings.IndexByte(line[i:], '"')
				if j < 0 {
					return dst, "malformed CSV: unterminated quote"
				}
				if b.Len() == 0 && (i+j+1 == len(line) || line[i+j+1] != '"') {
					// The common case, no doubled quote: a substring.
					dst = append(dst, line[i:i+j])
					i += j + 1
					break
				}
				b.WriteString(line[i : i+j])
				i += j + 1
				if i < len(line) && line[i] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				dst = append(dst, b.String())
				break
			}
			if i == len(line) {
				return dst, ""
			}
			if line[i] != sep {
				return dst, "malformed CSV: text after a closing quote"
			}
			line = line[i+1:]
			continue
		}
		j := strings.IndexByte(line, sep)
		if j < 0 {
			return append(dst, line), ""
		}
		dst = append(dst, line[:j])
		line = line[j+1:]
	}
}
