package dump_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/dump"
)

type rejection struct {
	Line   int64
	Reason string
}

func readAll(tb testing.TB, in io.Reader, opts dump.Options) ([]breachd.Digest, []rejection, dump.Stats, dump.Format) {
	tb.Helper()
	r, err := dump.NewReader(in, opts)
	if err != nil {
		tb.Fatalf("NewReader = %v", err)
	}
	defer r.Close()
	var rejs []rejection
	r.OnReject = func(line int64, reason string) { rejs = append(rejs, rejection{line, reason}) }
	var all []breachd.Digest
	buf := make([]breachd.Digest, 0, 3) // small batches exercise batch boundaries
	for {
		got, err := r.Read(buf)
		all = append(all, got...)
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatalf("Read = %v", err)
		}
	}
	return all, rejs, r.Stats(), r.Format()
}

func sum(tb testing.TB, email string) breachd.Digest {
	tb.Helper()
	d, err := canon.Digest(email)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func TestReader(t *testing.T) {
	t.Parallel()
	hexA := sum(t, "a@example.com").String()
	tests := []struct {
		name       string
		in         string
		opts       dump.Options
		wantFormat dump.Format
		want       []string // emails whose digests must come out, in order
		wantRej    []int64  // rejected line numbers
	}{
		{
			name:       "csv",
			in:         "email,name,date_of_birth,encrypted_password\r\nA@Example.com,Ann,1980-01-01,xx\r\n\" b@example.com \",\"Smith, Bob\",1970-02-02,yy\r\nbad-row,Carl,1990-01-01,zz\r\n\"unterminated,Dan,1,2\r\nshort\r\n\r\nc@example.org,Cy,,\r\n",
			wantFormat: dump.FormatCSV,
			want:       []string{"a@example.com", "b@example.com", "c@example.org"},
			wantRej:    []int64{4, 5, 6},
		},
		{
			name:       "csv other column",
			in:         "id,mail\n1,x@example.com\n2,\n",
			opts:       dump.Options{Column: "mail"},
			wantFormat: dump.FormatCSV,
			want:       []string{"x@example.com"},
			wantRej:    []int64{3},
		},
		{
			name:       "csv column not first, quoted with doubled quotes",
			in:         "name,email\n\"O\"\"Neil\",o@example.com\n",
			wantFormat: dump.FormatCSV,
			want:       []string{"o@example.com"},
		},
		{
			name:       "semicolon-separated, a spreadsheet's export",
			in:         "id;email;name\r\n1;A@Example.com;\"Smith; Ann\"\r\n2;bad;x\r\n3;b@example.com;Bob, Jr\r\n4,c@example.com,Cy\r\n",
			wantFormat: dump.FormatCSV,
			want:       []string{"a@example.com", "b@example.com"},
			wantRej:    []int64{3, 5}, // a row in commas is one field, not the email column
		},
		{
			name:       "tab-separated, other column",
			in:         "user\tmail\nann\tc@example.org\n",
			opts:       dump.Options{Column: "mail"},
			wantFormat: dump.FormatCSV,
			want:       []string{"c@example.org"},
		},
		{
			name:       "UTF-16, little-endian, tab-separated: a spreadsheet's Unicode text",
			in:         utf16Text(true, "Name\tEmail\r\nAnn\tA@Example.com\r\nBob\tbad\r\nCy\tc@example.org\r\n"),
			wantFormat: dump.FormatCSV,
			want:       []string{"a@example.com", "c@example.org"},
			wantRej:    []int64{3},
		},
		{
			name:       "UTF-16, big-endian, one address a line",
			in:         utf16Text(false, "b@example.com\nhans@straße.de\n"),
			wantFormat: dump.FormatEmails,
			want:       []string{"b@example.com", "hans@straße.de"},
		},
		{
			name:       "Excel's sep= line",
			in:         "sep=;\r\nName;Email\r\nSmith, Ann;A@Example.com\r\nBob;bad\r\n",
			wantFormat: dump.FormatCSV,
			want:       []string{"a@example.com"},
			wantRej:    []int64{4},
		},
		{
			name:       "Excel's sep= line, a separator no header would be split by",
			in:         "\xef\xbb\xbfSEP=|\nemail|name\nb@example.com|Bob; Jr\n",
			wantFormat: dump.FormatCSV,
			want:       []string{"b@example.com"},
		},
		{
			name: "JSON Lines: a database's export",
			in: `{"_id":{"$oid":"5f1"},"Email":"A@Example.com","name":"Ann","dob":"1980-01-01"}` + "\n" +
				`{"_id":2,"email":"b@example.com","email_verified":true}` + "\n" +
				`{"_id":3,"name":"no address"}` + "\n" +
				`{"_id":4,"email":null}` + "\n" +
				`{"_id":5,"email":"bad"}` + "\n" +
				`not json` + "\n" +
				`{"_id":7,"email":"c@example.org","tags":["a,b"]}` + "\n",
			wantFormat: dump.FormatJSONL,
			want:       []string{"a@example.com", "b@example.com", "c@example.org"},
			wantRej:    []int64{3, 4, 5, 6},
		},
		{
			name: "JSON Lines, a path: an Elasticsearch dump",
			in: `{"_index":"users","_id":"1","_source":{"email":"G@example.com","name":"G"}}` + "\n" +
				`{"_index":"users","_id":"2","_source":{"Email":"h@example.com"}}` + "\n" +
				`{"_index":"users","_id":"3","_source":"x"}` + "\n" +
				`{"_index":"users","_id":"4","_source":{"email":["i@example.com"]}}` + "\n" +
				`{"_index":"users","_id":"5"}` + "\n",
			opts:       dump.Options{Column: "_source.email"},
			wantFormat: dump.FormatJSONL,
			want:       []string{"g@example.com", "h@example.com"},
			wantRej:    []int64{3, 4, 5},
		},
		{
			name:       "JSON Lines, a path with a name no struct tag can carry",
			in:         `{"u":{"e,mail":"j@example.com"}}` + "\n" + `{"u":{"e,mail":null}}` + "\n" + `{"u":[1]}` + "\n",
			opts:       dump.Options{Column: "u.e,mail"},
			wantFormat: dump.FormatJSONL,
			want:       []string{"j@example.com"},
			wantRej:    []int64{2, 3},
		},
		{
			name:       "JSON Lines, a first row's null email is that row's",
			in:         `{"email":null}` + "\n" + `{"email":"k@example.com"}` + "\n",
			wantFormat: dump.FormatJSONL,
			want:       []string{"k@example.com"},
			wantRej:    []int64{1},
		},
		{
			name:       "JSON Lines, a top-level key with a dot: a name, not a path",
			in:         `{"user.email":"L@example.com","user":{"email":"other@example.com"}}` + "\n" + `{"user.email":"m@example.com"}` + "\n" + `{"user":{"email":"n@example.com"}}` + "\n",
			opts:       dump.Options{Column: "user.email"},
			wantFormat: dump.FormatJSONL,
			want:       []string{"l@example.com", "m@example.com"},
			wantRej:    []int64{3},
		},
		{
			name:       "JSON Lines, a field name no struct tag can carry",
			in:         `{"e,mail":"E@example.com"}` + "\n" + `{"E,MAIL":"f@example.com","x":1}` + "\n" + `{"e,mail":5}` + "\n",
			opts:       dump.Options{Column: "e,mail"},
			wantFormat: dump.FormatJSONL,
			want:       []string{"e@example.com", "f@example.com"},
			wantRej:    []int64{3},
		},
		{
			name:       "JSON Lines, another field",
			in:         `{"mail":"d@example.com"}` + "\n",
			opts:       dump.Options{Column: "mail", Format: dump.FormatJSONL},
			wantFormat: dump.FormatJSONL,
			want:       []string{"d@example.com"},
		},
		{
			name:       "carriage returns alone: Excel for Mac's Macintosh CSV",
			in:         "Name,Email\rAnn,A@Example.com\rBob,bad\r\rCy,c@example.org\r",
			wantFormat: dump.FormatCSV,
			want:       []string{"a@example.com", "c@example.org"},
			wantRej:    []int64{3},
		},
		{
			name:       "carriage returns alone, one address a line, no last one",
			in:         "b@example.com\rd@example.com",
			wantFormat: dump.FormatEmails,
			want:       []string{"b@example.com", "d@example.com"},
		},
		{
			name:       "UTF-16 with carriage returns alone",
			in:         utf16Text(true, "Email\rb@example.com\r"),
			wantFormat: dump.FormatCSV,
			want:       []string{"b@example.com"},
		},
		{
			name:       "commas before semicolons",
			in:         "id,email,notes;more\n1,d@example.com,a;b\n",
			wantFormat: dump.FormatCSV,
			want:       []string{"d@example.com"},
		},
		{
			name:       "emails with BOM and blank lines",
			in:         "\xef\xbb\xbfOne@Example.com\n\n  two@example.com  \nnot an email\nthree@example.com",
			wantFormat: dump.FormatEmails,
			want:       []string{"one@example.com", "two@example.com", "three@example.com"},
			wantRej:    []int64{4},
		},
		{
			name:       "sha256",
			in:         hexA + "\n" + strings.ToUpper(hexA) + "\nzz\n" + hexA[:10] + "\n",
			wantFormat: dump.FormatSHA256,
			want:       []string{"a@example.com", "a@example.com"},
			wantRej:    []int64{3, 4},
		},
		{
			name:       "long line rejected, next kept",
			in:         "a@example.com\n" + strings.Repeat("x", dump.MaxLineBytes+10) + "\nb@example.com\n",
			wantFormat: dump.FormatEmails,
			want:       []string{"a@example.com", "b@example.com"},
			wantRej:    []int64{2},
		},
		{
			name:       "long first lines rejected, format from the next",
			in:         strings.Repeat("x", dump.MaxLineBytes+1) + "\n\n" + strings.Repeat("y", 3*dump.MaxLineBytes) + "\n" + hexA + "\nzz\n",
			wantFormat: dump.FormatSHA256,
			want:       []string{"a@example.com"},
			wantRej:    []int64{1, 3, 5},
		},
		{
			name:       "only a long line",
			in:         strings.Repeat("x", dump.MaxLineBytes+1),
			wantFormat: dump.FormatAuto,
			wantRej:    []int64{1},
		},
		{
			name:       "empty",
			in:         "",
			wantFormat: dump.FormatAuto,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rejs, st, format := readAll(t, strings.NewReader(tt.in), tt.opts)
			// The same rows come in blocks of any size, with their
			// line numbers.
			for _, size := range []int{1, 3, 16, 1 << 18} {
				rows, f := readBlocks(t, strings.NewReader(tt.in), tt.opts, size)
				var ds []breachd.Digest
				var bad []rejection
				for _, row := range rows {
					if d, reason := rowDigest(row, f); reason != "" {
						bad = append(bad, rejection{row.Line, reason})
					} else {
						ds = append(ds, d)
					}
				}
				if f != format || !slices.Equal(ds, got) || !slices.Equal(bad, rejs) {
					t.Errorf("in blocks of %d: %v, %x, %v; want %v, %x, %v", size, f, ds, bad, format, got, rejs)
				}
			}
			if format != tt.wantFormat {
				t.Errorf("format = %v, want %v", format, tt.wantFormat)
			}
			var want []breachd.Digest
			for _, e := range tt.want {
				want = append(want, sum(t, e))
			}
			if !slices.Equal(got, want) {
				t.Errorf("digests = %x, want %x", got, want)
			}
			var lines []int64
			for _, r := range rejs {
				lines = append(lines, r.Line)
				if r.Reason == "" {
					t.Errorf("line %d rejected without a reason", r.Line)
				}
			}
			if !slices.Equal(lines, tt.wantRej) {
				t.Errorf("rejected lines = %v (%v), want %v", lines, rejs, tt.wantRej)
			}
			if st.Accepted != int64(len(want)) || st.Rejected != int64(len(tt.wantRej)) || st.Rows != st.Accepted+st.Rejected {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

// compressedUsers returns a CSV of 10,000 accounts, user0@example.com to
// user9999@example.com, compressed by kind: gzip, zstd and xz made here,
// bzip2 read from testdata (made by bzip2 -1, blocks of 100 kB, so two
// blocks; Go has no bzip2 writer).
func compressedUsers(t *testing.T, kind string) []byte {
	t.Helper()
	var text bytes.Buffer
	text.WriteString("email\n")
	for i := range 10000 {
		fmt.Fprintf(&text, "user%d@example.com\n", i)
	}
	var z bytes.Buffer
	switch kind {
	case "gzip":
		zw := gzip.NewWriter(&z)
		zw.Write(text.Bytes())
		zw.Close()
	case "zstd":
		zw, err := zstd.NewWriter(&z)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(text.Bytes())
		zw.Close()
	case "xz":
		zw, err := xz.NewWriter(&z)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(text.Bytes())
		zw.Close()
	case "bzip2":
		b, err := os.ReadFile("testdata/users.csv.bz2")
		if err != nil {
			t.Fatal(err)
		}
		z.Write(b)
	}
	return z.Bytes()
}

// TestReaderCompressed: gzip, zstd, bzip2 and xz are told by their magic and
// read as the text they hold.
func TestReaderCompressed(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"gzip", "zstd", "bzip2", "xz"} {
		t.Run(kind, func(t *testing.T) {
			got, rejs, _, format := readAll(t, bytes.NewReader(compressedUsers(t, kind)), dump.Options{})
			if format != dump.FormatCSV || len(got) != 10000 || len(rejs) != 0 || got[9999] != sum(t, "user9999@example.com") {
				t.Fatalf("%s read as %v: %d digests, %d rejected", kind, format, len(got), len(rejs))
			}
		})
	}
}

// TestReaderSeparatorLineAlone: Excel's "sep=" line with no header after
// it is an error saying so, not a header of two columns "sep" and "".
func TestReaderSeparatorLineAlone(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"sep=;\n", "sep=,\n\n  \n"} {
		_, err := dump.NewReader(strings.NewReader(in), dump.Options{})
		if err == nil || !strings.Contains(err.Error(), "line with no CSV header after it") {
			t.Errorf("NewReader(%q) = %v, want an error about the sep= line", in, err)
		}
	}
}

// TestReaderJSONLNoField: JSON Lines whose first object lacks the email
// field fail before any row, naming its fields and the flag to pass; rows
// are rejected with reasons that never hold their content.
func TestReaderJSONLNoField(t *testing.T) {
	t.Parallel()
	_, err := dump.NewReader(strings.NewReader(`{"id":1,"user_mail":"a@example.com","name":"Ann"}`+"\n"), dump.Options{})
	if !errors.Is(err, dump.ErrNoColumn) || !strings.Contains(err.Error(), `the first JSON object has no field named "email"; its fields are "id", "name", "user_mail": pass --column user_mail`) {
		t.Fatalf("NewReader = %v", err)
	}
	_, rejs, _, _ := readAll(t, strings.NewReader(`{"email":"a@example.com"}`+"\n"+`{"email":{"secret":"a@example.com"}}`+"\n"+`{"email":"a@example.com"`+"\n"), dump.Options{})
	for _, r := range rejs {
		if strings.Contains(r.Reason, "secret") || strings.Contains(r.Reason, "example") {
			t.Errorf("line %d: reason %q holds the row", r.Line, r.Reason)
		}
	}
	if len(rejs) != 2 || rejs[0].Reason != `the "email" field is not a string` || rejs[1].Reason != "malformed JSON: not one object" {
		t.Fatalf("rejections %+v", rejs)
	}
	_, rejs, _, _ = readAll(t, strings.NewReader(`{"s":{"email":"a@example.com"}}`+"\n"+`{"s":"x"}`+"\n"+`{"s":{"email":1}}`+"\n"+`{"s":{}}`+"\n"), dump.Options{Column: "s.email"})
	if len(rejs) != 3 || rejs[0].Reason != `the "s" field is not an object` || rejs[1].Reason != `the "s.email" field is not a string` || rejs[2].Reason != `no "s.email" field` {
		t.Fatalf("a path's rejections %+v", rejs)
	}
	// An Elasticsearch dump: the hint names the path.
	_, err = dump.NewReader(strings.NewReader(`{"_index":"u","_source":{"Email":"a@example.com"}}`+"\n"), dump.Options{})
	if !errors.Is(err, dump.ErrNoColumn) || !strings.Contains(err.Error(), "(it has _source.email: pass --column _source.email)") {
		t.Fatalf("NewReader of an Elasticsearch dump = %v", err)
	}
}

func TestReaderLongCSVHeader(t *testing.T) {
	t.Parallel()
	in := strings.Repeat("h", dump.MaxLineBytes+1) + "\na@example.com\n"
	_, err := dump.NewReader(strings.NewReader(in), dump.Options{Format: dump.FormatCSV})
	if err == nil || !strings.Contains(err.Error(), "line 1: the CSV header is longer than 64 KiB") {
		t.Fatalf("NewReader(long CSV header) = %v, want an error naming line 1", err)
	}
}

// TestReaderNoColumn: a CSV header without the email column fails before
// any row is read, naming the columns it has and the flag to pass, whether
// the format was given or detected. (A detected header used to make the
// file read as one address per line: "7,ann@example.com" was one address.)
func TestReaderNoColumn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		format   dump.Format
		want     string
	}{
		{"given csv", "mail,name\nx@example.com,X\n", dump.FormatCSV, `its columns are "mail", "name": pass --column mail`},
		{"user-base export", "user_id,email_address\n7,lschmidt@hotmail.com\n", dump.FormatAuto, `no column named "email"; its columns are "user_id", "email_address": pass --column email_address`},
		{"breach dump", "id,name,mail\n1,Ann,ann@example.com\n", dump.FormatAuto, `pass --column mail`},
		{"no likely column", "id,name,address\n1,Ann,ann@example.com\n", dump.FormatAuto, `name the column that holds the address with --column`},
		{"semicolon export", "user_id;email_address\n7;lschmidt@hotmail.com\n", dump.FormatAuto, `its columns are "user_id", "email_address": pass --column email_address`},
		{"tab-separated export", "user_id\tmail\n7\tlschmidt@hotmail.com\n", dump.FormatAuto, `pass --column mail`},
		{"spreadsheet header", "Name,Email Address\nAnn,ann@example.com\n", dump.FormatAuto, `pass --column 'Email Address'`},
		{"header with a quote", "Name,User's e-mail\nAnn,ann@example.com\n", dump.FormatAuto, `pass --column 'User'\''s e-mail'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dump.NewReader(strings.NewReader(tc.in), dump.Options{Format: tc.format})
			if !errors.Is(err, dump.ErrNoColumn) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewReader = %v, want ErrNoColumn saying %q", err, tc.want)
			}
		})
	}
	// Named, the column is read, and the exposed user is found.
	ds, rej, _, f := readAll(t, strings.NewReader("user_id,email_address\n7,lschmidt@hotmail.com\n"), dump.Options{Column: "email_address"})
	if f != dump.FormatCSV || len(rej) != 0 || !slices.Equal(ds, []breachd.Digest{sum(t, "lschmidt@hotmail.com")}) {
		t.Fatalf("with --column email_address: %v, %v, %v", f, rej, ds)
	}
	// One address a line: a CSV row is a rejected line, never an address.
	ds, rej, _, _ = readAll(t, strings.NewReader("ann@example.com\n7,lschmidt@hotmail.com\nbob@example.com\n"), dump.Options{})
	if len(ds) != 2 || len(rej) != 1 || rej[0].Line != 2 || !strings.Contains(rej[0].Reason, "comma") {
		t.Fatalf("emails with a CSV row: %d digests, rejections %v; want line 2 rejected for its comma", len(ds), rej)
	}
}

// TestReaderZIP: a spreadsheet (.xlsx, a ZIP archive) is refused up
// TestReaderNotText: an archive or a document is refused before any
// row, saying what it is and what to do; compressed by gzip too.
func TestReaderNotText(t *testing.T) {
	t.Parallel()
	var zipped bytes.Buffer
	zw := zip.NewWriter(&zipped)
	f, _ := zw.Create("xl/worksheets/sheet1.xml")
	f.Write([]byte("<worksheet>alice@example.com</worksheet>"))
	zw.Close()
	var tarred bytes.Buffer
	tw := tar.NewWriter(&tarred)
	body := "email\nalice@example.com\n"
	tw.WriteHeader(&tar.Header{Name: "users.csv", Mode: 0o600, Size: int64(len(body))})
	tw.Write([]byte(body))
	tw.Close()
	gz := func(b []byte) []byte {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(b)
		zw.Close()
		return z.Bytes()
	}
	tests := []struct {
		name, in, want string
	}{
		{"xlsx", zipped.String(), "ZIP archive (an .xlsx spreadsheet?): export it as CSV"},
		{"xlsx in gzip", string(gz(zipped.Bytes())), "ZIP archive"},
		{"tar", tarred.String(), "tar archive: extract it"},
		{"tar.gz", string(gz(tarred.Bytes())), "tar archive"},
		{"7z", "7z\xbc\xaf\x27\x1c\x00\x04rest", "7-Zip archive"},
		{"rar", "Rar!\x1a\x07\x01\x00rest", "RAR archive"},
		{"xls", "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1rest", "Excel 97-2003 workbook (.xls)"},
		{"pdf", "%PDF-1.7\n", "PDF document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dump.NewReader(strings.NewReader(tt.in), dump.Options{})
			if !errors.Is(err, dump.ErrNotText) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewReader = %v, want ErrNotText saying %q", err, tt.want)
			}
			// A password dump's files are each decompressed and checked.
			if _, _, _, err := readPasswordBlocks(t, "-", tt.in, breachd.SHA1, dump.PasswordHashes, 0); !errors.Is(err, dump.ErrNotText) {
				t.Fatalf("a password dump: %v, want ErrNotText", err)
			}
		})
	}
	// Short first lines that begin like a magic number are still read.
	for _, in := range []string{"BZh@example.com\n", "Rar@example.com\n", "7z@example.com\n"} {
		if got, _, _, _ := readAll(t, strings.NewReader(in), dump.Options{}); len(got) != 1 {
			t.Errorf("%q: %d digests, want 1", in, len(got))
		}
	}
}

// FuzzReader feeds arbitrary dumps through every format: the reader must
// never fail on content, and every row must be accepted or rejected.
func FuzzReader(f *testing.F) {
	f.Add("email,name\na@b.c,x\n\"q\"\"\",y\n", 0)
	f.Add("a@example.com\n\nB@EXAMPLE.COM\r\n", 2)
	f.Add(strings.Repeat("ab", 32)+"\nzz\n", 3)
	f.Add("\"unterminated\n,,,\n\"a\"x,b\n", 1)
	f.Fuzz(func(t *testing.T, text string, format int) {
		opts := dump.Options{Format: dump.Format(uint(format) % 4)}
		r, err := dump.NewReader(strings.NewReader(text), opts)
		if err != nil {
			return // a header problem is reported up front
		}
		var rejected int64
		r.OnReject = func(int64, string) { rejected++ }
		var n int64
		buf := make([]breachd.Digest, 0, 7)
		for {
			got, err := r.Read(buf)
			n += int64(len(got))
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Read = %v", err)
			}
		}
		st := r.Stats()
		if st.Accepted != n || st.Rejected != rejected || st.Rows != st.Accepted+st.Rejected {
			t.Fatalf("stats %+v, digests %d, rejections %d", st, n, rejected)
		}
	})
}

func TestParseManifest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"ok", `{"Name":"SegaPass","Title":"Sega Pass","BreachDate":"2011-06-17","PwnCount":1290775,"DataClasses":["Email addresses"]}`, true},
		{"unknown field", `{"Name":"SegaPass","Title":"Sega Pass","Accounts":1}`, false},
		{"invalid", `{"Name":"","Title":"x"}`, false},
		{"two objects", `{"Name":"a","Title":"x"}{"Name":"b","Title":"y"}`, false},
		{"not json", `Name: a`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dump.ParseManifest(strings.NewReader(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("ParseManifest = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	// A manifest file as an editor saves it.
	const m = `{"Name":"SegaPass","Title":"Sega Pass ü"}`
	for name, content := range map[string]string{"plain": m, "Notepad's byte order mark": "\xef\xbb\xbf" + m + "\r\n", "UTF-16": utf16Text(true, m)} {
		path := filepath.Join(t.TempDir(), "manifest.json")
		os.WriteFile(path, []byte(content), 0o600)
		if b, err := dump.ReadManifest(path); err != nil || b.Title != "Sega Pass ü" {
			t.Errorf("ReadManifest of %s = %+v, %v", name, b, err)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add(`{"Name":"SegaPass","Title":"Sega Pass","BreachDate":"2011-06-17"}`)
	f.Add(`{"Name":"x"}`)
	f.Fuzz(func(t *testing.T, s string) {
		b, err := dump.ParseManifest(strings.NewReader(s))
		if err == nil {
			if verr := b.Validate(); verr != nil {
				t.Fatalf("ParseManifest accepted an invalid breach: %v", verr)
			}
		}
	})
}

// FuzzBlocks checks the two readings of a dump in blocks against a
// reading line by line (ReadSerial), for any dump, format and block size:
// Read's (blocks parsed on every core) gives the same digests, the same
// rejections (line and reason, in order) and the same counts; and each row
// that ReadBlock's blocks hold (the bulk checker's) is rejected for the
// reason the line is, or its value makes the digest the line does. The
// line-by-line reading and the blocks' cut lines differently (ReadSlice
// against cut and eachLine), and share only the CSV splitter and the
// format's detection.
func FuzzBlocks(f *testing.F) {
	f.Add("email,name\na@b.c,x\n\"q\"\"@b.c\",y\nc@d.e\nonly\n,\n", 0, uint16(5))
	f.Add("user,email\n1,a@example.com\n2\n3,\"b@example.com\"\n4,c@example.com,extra\n", 1, uint16(1))
	f.Add("a@example.com\n\nB@EXAMPLE.COM\r\nx,y@z.com\n  \n", 2, uint16(3))
	f.Add(strings.Repeat("ab", 32)+"\nzz\n", 3, uint16(64))
	f.Add("\"unterminated\n,,,\n\"a\"x,b\n", 1, uint16(2))
	f.Add("email,name\ra@b.c,x\r\"q\r@b.c\",y\r\rc@d.e", 0, uint16(4))
	f.Add("sep=|\nname|email\nx|a@b.c\n\"y|z\"|c@d.e\nonly\n", 0, uint16(3))
	f.Add("{\"email\":\"a@b.c\",\"n\":[1]}\n{\"Email\":\"x\"}\n{\"email\":7}\nnot json\n{}\n", 0, uint16(2))
	f.Add("a@example.com\n"+strings.Repeat("x", dump.MaxLineBytes)+"\n"+strings.Repeat("y", dump.MaxLineBytes-1)+"\nb@example.com", 2, uint16(1000))
	f.Fuzz(func(t *testing.T, text string, format int, size uint16) {
		opts := dump.Options{Format: dump.Format(uint(format) % 4)}
		read := func(read func(*dump.Reader, []breachd.Digest) ([]breachd.Digest, error), blockBytes int) ([]breachd.Digest, []rejection, dump.Stats, bool) {
			r, err := dump.NewReader(strings.NewReader(text), opts)
			if err != nil {
				return nil, nil, dump.Stats{}, false
			}
			defer r.Close()
			dump.SetReadBlockBytes(r, blockBytes)
			var rejs []rejection
			r.OnReject = func(line int64, reason string) { rejs = append(rejs, rejection{line, reason}) }
			var digests []breachd.Digest
			for buf := make([]breachd.Digest, 0, 5); ; {
				got, err := read(r, buf)
				digests = append(digests, got...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("Read = %v", err)
				}
			}
			return digests, rejs, r.Stats(), true
		}
		digests, rejs, stats, ok := read(dump.ReadSerial, 0)
		if !ok {
			return
		}
		pd, prejs, pstats, _ := read((*dump.Reader).Read, int(size))
		if !slices.Equal(pd, digests) || !slices.Equal(prejs, rejs) || pstats != stats {
			t.Fatalf("Read in blocks of %d: %d digests, rejections %v, %+v; line by line: %d digests, rejections %v, %+v",
				size, len(pd), prejs, pstats, len(digests), rejs, stats)
		}
		if stats.Rows != stats.Accepted+stats.Rejected || stats.Accepted != int64(len(digests)) || stats.Rejected != int64(len(rejs)) {
			t.Fatalf("stats %+v, %d digests, %d rejections", stats, len(digests), len(rejs))
		}
		rejected := map[int64]string{}
		for _, j := range rejs {
			rejected[j.Line] = j.Reason
		}
		rows, f := readBlocks(t, strings.NewReader(text), opts, int(size))
		for _, row := range rows {
			d, reason := rowDigest(row, f)
			if reason != "" {
				if rejected[row.Line] != reason {
					t.Fatalf("line %d: the block's row %q rejected for %q, Read's for %q", row.Line, row.Value, reason, rejected[row.Line])
				}
				delete(rejected, row.Line)
				continue
			}
			if len(digests) == 0 || digests[0] != d {
				t.Fatalf("line %d: the block's row %q is not the next digest Read gave", row.Line, row.Value)
			}
			digests = digests[1:]
		}
		if len(digests) != 0 || len(rejected) != 0 {
			t.Fatalf("Read gave %d digests and %d rejections more than the blocks' rows", len(digests), len(rejected))
		}
	})
}

// readBlocks reads a dump's rows through ReadBlock and Rows.
func readBlocks(tb testing.TB, in io.Reader, opts dump.Options, size int) ([]dump.Row, dump.Format) {
	tb.Helper()
	r, err := dump.NewReader(in, opts)
	if err != nil {
		tb.Fatalf("NewReader = %v", err)
	}
	var rows []dump.Row
	for {
		b, err := r.ReadBlock(size)
		if err == io.EOF {
			return rows, r.Format()
		}
		if err != nil {
			tb.Fatalf("ReadBlock = %v", err)
		}
		rows = r.Rows(b, rows)
	}
}

// rowDigest is what a bulk checker makes of a row: its digest, or why not.
func rowDigest(row dump.Row, f dump.Format) (breachd.Digest, string) {
	if row.Reject != "" {
		return breachd.Digest{}, row.Reject
	}
	var d breachd.Digest
	var err error
	if f == dump.FormatSHA256 {
		d, err = breachd.ParseDigest(strings.TrimSpace(row.Value))
	} else {
		d, err = canon.Digest(row.Value)
	}
	if err != nil {
		return d, err.Error()
	}
	return d, ""
}

// TestTruncatedCompressed: a compressed stream cut short is an error,
// whether read row by row or in blocks, never a dump that ends early: the
// rows after the cut would be missing from an import, or a sweep's report,
// without a word.
func TestTruncatedCompressed(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"gzip", "zstd", "bzip2", "xz"} {
		z := compressedUsers(t, kind)
		cut := z[:len(z)*3/4] // past the first block of zstd's and bzip2's
		r, err := dump.NewReader(bytes.NewReader(cut), dump.Options{})
		if err != nil && kind == "xz" {
			continue // an error before the first row (xz's one block): not a dump that ends early
		}
		if err != nil {
			t.Fatal(err)
		}
		for buf := make([]breachd.Digest, 0, 100); ; {
			_, err = r.Read(buf)
			if err != nil {
				break
			}
		}
		if err == io.EOF {
			t.Errorf("Read of a truncated %s stream ended with %v, want an error", kind, err)
		}
		r, err = dump.NewReader(bytes.NewReader(cut), dump.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for {
			_, err = r.ReadBlock(1 << 10)
			if err != nil {
				break
			}
		}
		if err == io.EOF {
			t.Errorf("ReadBlock of a truncated %s stream ended with %v, want an error", kind, err)
		}
	}
	var p bytes.Buffer
	zw := gzip.NewWriter(&p)
	for i := range 2000 {
		fmt.Fprintf(zw, "%040X:%d\n", i, i+1)
	}
	zw.Close()
	_, _, _, err := readPasswordBlocks(t, "-", string(p.Bytes()[:p.Len()/2]), breachd.SHA1, dump.PasswordHashes, 1<<10)
	if err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("a truncated gzip password dump ended with %v, want unexpected EOF", err)
	}
}

// utf16Text is s in UTF-16 with a byte order mark, little- or big-endian.
func utf16Text(little bool, s string) string {
	var b []byte
	put := func(u uint16) {
		if little {
			b = append(b, byte(u), byte(u>>8))
		} else {
			b = append(b, byte(u>>8), byte(u))
		}
	}
	put(0xfeff)
	for _, u := range utf16.Encode([]rune(s)) {
		put(u)
	}
	return string(b)
}

// BenchmarkReader reads the same 100,000 accounts as each shape a breach
// dump comes in, on every core (Read): ns/row is the time per row, the
// figure to compare between shapes (JSON Lines' field decoding, a
// decompressor's cost).
func BenchmarkReader(b *testing.B) {
	const rows = 100_000
	var csv, emails, jsonl bytes.Buffer
	csv.WriteString("id,email,name,dob\n")
	for i := range rows {
		fmt.Fprintf(&csv, "%d,user%d@example%d.com,Name %d,1980-01-01\n", i, i, i%97, i)
		fmt.Fprintf(&emails, "user%d@example%d.com\n", i, i%97)
		fmt.Fprintf(&jsonl, `{"_id":%d,"email":"user%d@example%d.com","name":"Name %d","dob":"1980-01-01"}`+"\n", i, i, i%97, i)
	}
	compress := func(kind string, text []byte) []byte {
		var z bytes.Buffer
		switch kind {
		case "gzip":
			zw := gzip.NewWriter(&z)
			zw.Write(text)
			zw.Close()
		case "zstd":
			zw, _ := zstd.NewWriter(&z)
			zw.Write(text)
			zw.Close()
		}
		return z.Bytes()
	}
	for _, bc := range []struct {
		name string
		in   []byte
	}{
		{"csv", csv.Bytes()},
		{"emails", emails.Bytes()},
		{"jsonl", jsonl.Bytes()},
		{"csv.gz", compress("gzip", csv.Bytes())},
		{"csv.zst", compress("zstd", csv.Bytes())},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]breachd.Digest, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				r, err := dump.NewReader(bytes.NewReader(bc.in), dump.Options{})
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					got, err := r.Read(buf)
					n += len(got)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				r.Close()
				if n != rows {
					b.Fatalf("%d digests, want %d", n, rows)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/rows, "ns/row")
		})
	}
}
