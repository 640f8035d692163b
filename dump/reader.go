package dump

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	xunicode "golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"

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

// decompress returns br, or a reader of the text it holds compressed:
// gzip, zstd, bzip2 or xz, told by their magic numbers. Input that is an
// archive or a document rather than text, before or after decompression,
// is refused with ErrNotText, saying what to do: read as text its bytes
// would be rows all invalid, or worse, a CSV header and rows read from
// inside a tar's blocks.
func decompress(br *bufio.Reader) (*bufio.Reader, error) {
	switch {
	case startsWith(br, "\x1f\x8b"):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		br = bufio.NewReaderSize(zr, 256<<10)
	case startsWith(br, "\x28\xb5\x2f\xfd"):
		// One decoder, in step with the reads: no goroutines of its
		// own, so nothing to close.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		br = bufio.NewReaderSize(zr, 256<<10)
	case startsWith(br, "BZh") && isBzip2(br):
		br = bufio.NewReaderSize(bzip2.NewReader(br), 256<<10)
	case startsWith(br, "\xfd7zXZ\x00"):
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		br = bufio.NewReaderSize(zr, 256<<10)
	}
	for _, n := range notText {
		if startsWith(br, n.magic) {
			return nil, fmt.Errorf("%w: the input is %s", ErrNotText, n.what)
		}
	}
	// A tar's magic is at byte 257: looked for only in what the first
	// read brought, so a live feed's first line is never held back.
	if head, _ := br.Peek(br.Buffered()); len(head) >= 262 && string(head[257:262]) == "ustar" {
		return nil, fmt.Errorf("%w: the input is a tar archive: extract it (tar -xf), or pipe one file of it (tar -xOf ARCHIVE FILE | ... -)", ErrNotText)
	}
	return br, nil
}

// notText are the magic numbers of inputs that are not text, and what to
// do with each.
var notText = []struct{ magic, what string }{
	{"PK\x03\x04", "a ZIP archive (an .xlsx spreadsheet?): export it as CSV, or unzip it"},
	{"7z\xbc\xaf\x27\x1c", "a 7-Zip archive: extract it (7z x), or pipe one file of it (7z e -so ARCHIVE FILE | ... -)"},
	{"Rar!\x1a\x07", "a RAR archive: extract it"},
	{"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls) or another Office document: export it as CSV"},
	{"%PDF-", "a PDF document: export its table as CSV"},
}

// startsWith reports whether br's input starts with magic. It waits for
// more input only while what has come so far could still be magic's start,
// so a live feed's first line, shorter than a magic number, is not held
// back.
func startsWith(br *bufio.Reader, magic string) bool {
	br.Peek(1) // one read, if none has been
	head, _ := br.Peek(min(len(magic), br.Buffered()))
	if !strings.HasPrefix(magic, string(head)) {
		return false
	}
	head, _ = br.Peek(len(magic))
	return string(head) == magic
}

// isBzip2 reports whether br, which starts with "BZh", is a bzip2 stream:
// a block size digit, then a block's or the end's magic.
func isBzip2(br *bufio.Reader) bool {
	head, _ := br.Peek(10)
	return len(head) == 10 && '1' <= head[3] && head[3] <= '9' &&
		(string(head[4:]) == "\x31\x41\x59\x26\x53\x59" || string(head[4:]) == "\x17\x72\x45\x38\x50\x90")
}

// fromUTF16 returns br, or a reader of its text in UTF-8 if it starts with
// a UTF-16 byte order mark: a spreadsheet's "Unicode text" export (tab-
// separated UTF-16), which would otherwise be read as bytes with a NUL
// between each two, no row valid.
func fromUTF16(br *bufio.Reader) *bufio.Reader {
	bom, _ := br.Peek(2)
	if len(bom) < 2 || !(bom[0] == 0xff && bom[1] == 0xfe || bom[0] == 0xfe && bom[1] == 0xff) {
		return br
	}
	dec := xunicode.UTF16(xunicode.LittleEndian, xunicode.ExpectBOM).NewDecoder()
	return bufio.NewReaderSize(transform.NewReader(br, dec), 256<<10)
}

// fromClassicMac returns br, or a reader of its text with each carriage
// return made a line feed if its lines end in a carriage return alone:
// Excel for Mac's "Macintosh Comma Separated" export, which would
// otherwise be read as one line, one invalid row. It looks only at what
// the first read brought (never waiting for more: a live feed's first line
// may be all there is), and decides there: a carriage return followed by
// anything but a line feed, and no line feed.
func fromClassicMac(br *bufio.Reader) *bufio.Reader {
	if _, err := br.Peek(1); err != nil {
		return br
	}
	head, _ := br.Peek(br.Buffered())
	if bytes.IndexByte(head, '\n') >= 0 {
		return br
	}
	i := bytes.IndexByte(head, '\r')
	if i < 0 || i == len(head)-1 {
		return br // no carriage return, or one a line feed may follow
	}
	return bufio.NewReaderSize(crLines{br}, 256<<10)
}

// crLines reads r with each carriage return made a line feed.
type crLines struct{ r io.Reader }

func (c crLines) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for b := p[:n]; ; {
		i := bytes.IndexByte(b, '\r')
		if i < 0 {
			break
		}
		b[i] = '\n'
		b = b[i+1:]
	}
	return n, err
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
	// jsonRow is JSON Lines' row type (jsonRowType), nil for a map; a
	// combolist's password's path and row type likewise
	jsonRow, pwRow reflect.Type
	pwPath         string
	pairs          bool // a combolist (NewPairReader)
	stats          Stats
	peeked         []byte // first non-blank line, read during detection
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
	br = fromClassicMac(fromUTF16(br))
	var idle func() bool
	if i, ok := r.(Idle); ok && br == plain { // not through gzip's buffers
		idle = i.Idle
	}
	rd := &Reader{lines: lines{br: br, idle: idle}, opts: opts, format: opts.Format, sep: ',', pwCol: -1, pairs: pwColumn != "", blockBytes: parseBlockBytes}
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
	first = bytes.TrimPrefix(first, []byte("\xef\xbb\xbf")) // UTF-8 BOM
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
		rd.jsonRow = jsonRowType(opts.Column)
		// The first object is a row; it must have the field (and a
		// combolist's, the password's), or every row would be rejected.
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(first, &keys); err != nil {
			return nil, fmt.Errorf("line %d: malformed JSON: not one object", rd.line)
		}
		if !jsonHas(first, opts.Column) {
			return nil, noField(slices.Sorted(maps.Keys(keys)), opts.Column, "--column", "the address", "mail", jsonHint(first, opts.Column))
		}
		if rd.pairs {
			rd.pwPath, rd.pwRow = pwColumn, jsonRowType(pwColumn)
			if !jsonHas(first, pwColumn) {
				return nil, noField(slices.Sorted(maps.Keys(keys)), pwColumn, "--password-column", "the password", "pass", jsonHint(first, pwColumn))
			}
		}
	}
	rd.peeked = first
	return rd, nil
}

// A JSON Lines column is a path: its dot-separated names lead from the
// top-level object through nested ones to the string ("_source.email", an
// Elasticsearch dump's). Each name matches a key as encoding/json matches
// a struct's field: exactly, else without regard to case.

// jsonRowType is the struct a JSON Lines row is decoded into, for column:
// nested structs of one pointer field each, tagged with the path's names,
// a *string at the end, so that encoding/json skips the row's other
// fields without keeping them (half the CPU of a map of them). Nil if a
// name is one a tag cannot carry (jsonField then decodes maps).
func jsonRowType(column string) reflect.Type {
	for _, c := range column {
		if !unicode.IsLetter(c) && !unicode.IsDigit(c) && !strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c) {
			return nil // encoding/json would ignore the tag
		}
	}
	names := strings.Split(column, ".")
	t := reflect.TypeFor[*string]()
	for i := len(names) - 1; i >= 0; i-- {
		if names[i] == "" {
			return nil
		}
		t = reflect.StructOf([]reflect.StructField{{Name: "V", Type: t, Tag: reflect.StructTag("json:" + strconv.Quote(names[i]))}})
		if i > 0 {
			t = reflect.PointerTo(t)
		}
	}
	return t
}

// jsonField returns the string at column's path in line, or a reason
// there is none, decoding it into a value of rowType (from jsonRowType;
// nil: maps). The reason never holds the row's content.
func jsonField(line, column string, rowType reflect.Type) (string, string) {
	if rowType != nil {
		p := reflect.New(rowType)
		if err := json.Unmarshal([]byte(line), p.Interface()); err != nil {
			if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) && te.Field != "" {
				if strings.EqualFold(te.Field, column) {
					return "", fmt.Sprintf("the %q field is not a string", column)
				}
				return "", fmt.Sprintf("the %q field is not an object", te.Field)
			}
			return "", "malformed JSON: not one object"
		}
		v := p.Elem()
		for {
			f := v.Field(0)
			if f.IsNil() {
				return "", fmt.Sprintf("no %q field", column)
			}
			if s, ok := f.Interface().(*string); ok {
				return *s, ""
			}
			v = f.Elem()
		}
	}
	raw := json.RawMessage(line)
	names := strings.Split(column, ".")
	if len(names) > 1 && slices.Contains(names, "") {
		names = []string{column} // not a path: a name with a stray dot
	}
	for i, name := range names {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			if i == 0 {
				return "", "malformed JSON: not one object"
			}
			return "", fmt.Sprintf("the %q field is not an object", strings.Join(names[:i], "."))
		}
		var ok bool
		if raw, ok = lookupFold(fields, name); !ok || string(raw) == "null" {
			return "", fmt.Sprintf("no %q field", column)
		}
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", fmt.Sprintf("the %q field is not a string", column)
	}
	return v, ""
}

// lookupFold finds key in m, exactly, else without regard to case.
func lookupFold(m map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

// jsonHas reports whether line, a JSON object, has column's path as
// keys, whatever their values (a first row's null email is that row's
// rejection, not the dump's): false only where an object lacks a name.
func jsonHas(line []byte, column string) bool {
	raw := json.RawMessage(line)
	names := strings.Split(column, ".")
	if len(names) > 1 && slices.Contains(names, "") {
		names = []string{column}
	}
	for _, name := range names {
		var fields map[string]json.RawMessage
		if json.Unmarshal(raw, &fields) != nil {
			return true // not an object: that row's rejection
		}
		var ok bool
		if raw, ok = lookupFold(fields, name); !ok {
			return false
		}
	}
	return true
}

// jsonHint names, for a first object without column, the path to pass
// instead if column is found one level down ("_source.email"), else "".
func jsonHint(first []byte, column string) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(first, &top) != nil {
		return ""
	}
	for _, k := range slices.Sorted(maps.Keys(top)) {
		var inner map[string]json.RawMessage
		if json.Unmarshal(top[k], &inner) != nil {
			continue
		}
		if _, ok := lookupFold(inner, column); ok {
			return k + "." + column
		}
	}
	return ""
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

// noField is noColumnFlag for JSON Lines: the first object's fields, and
// the path to pass if the field was found one level down (path, else "").
func noField(fields []string, column, flag, what, like, path string) error {
	err := noNamed("the first JSON object has no field named", "its fields are", fields, column, flag, what, like)
	if path != "" {
		return fmt.Errorf("%w (it has %s: pass %s %s)", err, path, flag, path)
	}
	return err
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
		hint = "pass " + flag + " " + mail[0]
	}
	return fmt.Errorf("%w: %s %q; %s %s: %s", ErrNoColumn, has, column, are, strings.Join(cols, ", "), hint)
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
		v, reason := jsonField(line, r.opts.Column, r.jsonRow)
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
