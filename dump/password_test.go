package dump_test

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/dump"
)

func readPasswords(t *testing.T, path string, in string, k breachd.HashKind, f dump.PasswordFormat) ([]breachd.PasswordRecord, dump.Stats, []string) {
	t.Helper()
	recs, st, rejects, err := readPasswordBlocks(t, path, in, k, f, 0)
	if err != nil {
		t.Fatal(err)
	}
	return recs, st, rejects
}

// readPasswordBlocks reads a password dump whose lines are cut into blocks
// of size bytes (0: the default), to its end or its error.
func readPasswordBlocks(t *testing.T, path string, in string, k breachd.HashKind, f dump.PasswordFormat, size int) ([]breachd.PasswordRecord, dump.Stats, []string, error) {
	t.Helper()
	rd, err := dump.NewPasswordReader(t.Context(), path, strings.NewReader(in), k, f)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if size > 0 {
		dump.SetBlockBytes(rd, size)
	}
	var rejects []string
	rd.OnReject = func(file string, line int64, reason string) {
		rejects = append(rejects, fmt.Sprintf("%s:%d %s", filepath.Base(file), line, reason))
	}
	var out []breachd.PasswordRecord
	buf := make([]breachd.PasswordRecord, 0, 2)
	for {
		rs, err := rd.Read(buf)
		out = append(out, rs...)
		if err == io.EOF {
			return out, rd.Stats(), rejects, nil
		}
		if err != nil {
			return out, rd.Stats(), rejects, err
		}
	}
}

func hexOf(r breachd.PasswordRecord, k breachd.HashKind) string {
	return strings.ToUpper(hex.EncodeToString(r.Hash[:k.Size()]))
}

// TestPasswordReader reads each shape a password dump comes in: HASH:COUNT
// lines (CRLF, either case, a missing count is 1, count 0 is padding),
// per-prefix files of SUFFIX:COUNT lines, and plain lists hashed with
// SHA-1 or NTLM (checked against known hashes of "password").
func TestPasswordReader(t *testing.T) {
	t.Parallel()
	const pwSHA1 = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"
	const pwNTLM = "8846F7EAEE8FB117AD06BDD830B7586C"
	recs, st, rejects := readPasswords(t, "-", strings.ToLower(pwSHA1)+":9545824\r\n\r\n"+pwSHA1[:39]+"0\r\n"+
		pwSHA1[:39]+"1:0\r\nnot-a-hash:3\r\n"+pwSHA1+":x\r\n", breachd.SHA1, dump.PasswordHashes)
	if len(recs) != 2 || hexOf(recs[0], breachd.SHA1) != pwSHA1 || recs[0].Count != 9545824 || recs[1].Count != 1 {
		t.Errorf("records %+v", recs)
	}
	if st.Rows != 4 || st.Accepted != 2 || st.Rejected != 2 || len(rejects) != 2 {
		t.Errorf("stats %+v, rejects %q: want 4 rows (padding is none), 2 accepted, 2 rejected", st, rejects)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "5BAA6.txt"), []byte(pwSHA1[5:]+":12\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00000.txt"), []byte("00000"+pwSHA1[5:]+":1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, _, _ = readPasswords(t, dir, "", breachd.SHA1, dump.PasswordHashes)
	if len(recs) != 2 || hexOf(recs[0], breachd.SHA1) != "00000"+pwSHA1[5:] || hexOf(recs[1], breachd.SHA1) != pwSHA1 || recs[1].Count != 12 {
		t.Errorf("per-prefix directory: %+v", recs)
	}

	for _, tc := range []struct {
		k    breachd.HashKind
		want string
	}{{breachd.SHA1, pwSHA1}, {breachd.NTLM, pwNTLM}} {
		recs, st, _ := readPasswords(t, "-", "password\npassword\r\n\nhunter2\n", tc.k, dump.PasswordPlain)
		if len(recs) != 3 || hexOf(recs[0], tc.k) != tc.want || hexOf(recs[1], tc.k) != tc.want || st.Accepted != 3 {
			t.Errorf("plain %s: %d records, first %s; want 3, %s", tc.k, len(recs), hexOf(recs[0], tc.k), tc.want)
		}
	}
	// A byte order mark, UTF-8 or UTF-16, is not part of the first
	// password (or hash).
	for _, in := range []string{"\xef\xbb\xbfpassword\r\n", utf16Text(true, "password\r\n"), utf16Text(false, "password\n")} {
		if recs, _, _ := readPasswords(t, "-", in, breachd.SHA1, dump.PasswordPlain); len(recs) != 1 || hexOf(recs[0], breachd.SHA1) != pwSHA1 {
			t.Errorf("plain %q: %d records, want 1 of %s", in, len(recs), pwSHA1)
		}
	}
	if recs, _, _ := readPasswords(t, "-", "password\rhunter2\r", breachd.SHA1, dump.PasswordPlain); len(recs) != 2 || hexOf(recs[0], breachd.SHA1) != pwSHA1 {
		t.Errorf("plain, lines ending in CR alone: %d records, want 2, the first %s", len(recs), pwSHA1)
	}
	if recs, _, _ := readPasswords(t, "-", "\xef\xbb\xbf"+pwSHA1+":3\n", breachd.SHA1, dump.PasswordHashes); len(recs) != 1 || recs[0].Count != 3 {
		t.Errorf("HASH:COUNT after a byte order mark: %+v", recs)
	}
	if _, _, rejects := readPasswords(t, "-", "caf\xe9\n", breachd.NTLM, dump.PasswordPlain); len(rejects) != 1 {
		t.Errorf("invalid UTF-8 for NTLM: rejects %q, want 1", rejects)
	}
}

// TestPasswordReaderBlocks: the lines are parsed in blocks on every core;
// wherever the blocks' edges fall, the records, the rejected lines' numbers,
// the counts and a long line's error are the same, in the dump's order.
func TestPasswordReaderBlocks(t *testing.T) {
	t.Parallel()
	const h = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"
	long := strings.Repeat("7", dump.MaxLineBytes)
	for _, tc := range []struct {
		name, in string
		format   dump.PasswordFormat
		recs     int
		rejects  []string // file:line reason, shortened to file:line
		err      string
		plain    []string // the passwords of a plain dump's records, in order
	}{
		{"hashes", h + ":3\r\n\n  " + h + ":1  \r\r\nzz\n" + h[:39] + "1:0\n" + h + "\n" + h + ":x", dump.PasswordHashes, 3, []string{"stdin:4", "stdin:7"}, "", nil},
		{"plain", "password\r\n p \n\n\r\nhunter2\r\r\nlast", dump.PasswordPlain, 4, nil, "", []string{"password", " p ", "hunter2", "last"}},
		{"longest line", long[1:] + "\n" + h + ":1\n", dump.PasswordHashes, 1, []string{"stdin:1"}, "", nil},
		{"long line ends the dump", h + ":1\n" + long + "\n" + h + ":2\n", dump.PasswordHashes, 1, nil, "stdin: line 2 is longer than 65536 bytes", nil},
		{"long last line", "p\n" + long + "1", dump.PasswordPlain, 1, nil, "stdin: line 2 is longer", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, wantSt, _, _ := readPasswordBlocks(t, "-", tc.in, breachd.SHA1, tc.format, 0)
			for i, pw := range tc.plain {
				if h := sha1.Sum([]byte(pw)); i >= len(want) || !bytes.Equal(want[i].Hash[:sha1.Size], h[:]) {
					t.Errorf("record %d is not the SHA-1 of %q", i, pw)
				}
			}
			for _, size := range []int{0, 1, 2, 5, 64, 70000} {
				recs, st, rejects, err := readPasswordBlocks(t, "-", tc.in, breachd.SHA1, tc.format, size)
				for i, r := range rejects {
					rejects[i], _, _ = strings.Cut(r, " ")
				}
				if len(recs) != tc.recs || !slices.Equal(recs, want) || st != wantSt || !slices.Equal(rejects, tc.rejects) {
					t.Errorf("blocks of %d: %d records, stats %+v, rejects %q; want %d, %+v, %q", size, len(recs), st, rejects, tc.recs, wantSt, tc.rejects)
				}
				if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
					t.Errorf("blocks of %d: error %v, want %q", size, err, tc.err)
				}
			}
		})
	}
}

// TestReaderClose: Close stops the goroutines that read ahead, of a
// password dump's reader and of a breach dump's, and a Read after it fails
// rather than look like the end of the dump.
func TestReaderClose(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, line string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(strings.Repeat(line, 100000)), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pwPath := write("pw.txt", "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:1\n")
	emailPath := write("emails.txt", "someone@example.com\n")
	for _, tc := range []struct {
		name string
		open func(t *testing.T) (read func() (int, error), close func() error)
	}{
		{"passwords", func(t *testing.T) (func() (int, error), func() error) {
			rd, err := dump.NewPasswordReader(t.Context(), pwPath, nil, breachd.SHA1, dump.PasswordHashes)
			if err != nil {
				t.Fatal(err)
			}
			dump.SetBlockBytes(rd, 4096)
			return func() (int, error) {
				recs, err := rd.Read(make([]breachd.PasswordRecord, 0, 10))
				return len(recs), err
			}, rd.Close
		}},
		{"emails", func(t *testing.T) (func() (int, error), func() error) {
			f, err := os.Open(emailPath)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			rd, err := dump.NewReader(f, dump.Options{})
			if err != nil {
				t.Fatal(err)
			}
			dump.SetReadBlockBytes(rd, 4096)
			return func() (int, error) {
				ds, err := rd.Read(make([]breachd.Digest, 0, 10))
				return len(ds), err
			}, rd.Close
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read, closeReader := tc.open(t)
			if n, err := read(); n != 10 || err != nil {
				t.Fatalf("Read = %d records, %v", n, err)
			}
			done := make(chan struct{})
			go func() {
				closeReader()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not return: the reading goroutines did not stop")
			}
			if _, err := read(); err == nil || err == io.EOF {
				t.Fatalf("Read after Close = %v, want an error", err)
			}
		})
	}
}

// TestPasswordReaderClosesFiles: each file of a directory is closed once
// read. A Pwned Passwords download is a million per-prefix files: one
// descriptor left open a file ends an import at the process's limit.
func TestPasswordReaderClosesFiles(t *testing.T) {
	dir := t.TempDir()
	const files = 500
	for i := range files {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05X.txt", i)), []byte("1E4C9B93F3F0682250B6CF8331B7EE68FD8:2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	open := func() int {
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("cannot count open files: %v", err)
		}
		return len(fds)
	}
	// No collection meanwhile: a lost *os.File's finalizer would close it.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	before := open()
	recs, st, _ := readPasswords(t, dir, "", breachd.SHA1, dump.PasswordHashes)
	if len(recs) != files || st.Accepted != files {
		t.Fatalf("%d records, stats %+v; want %d", len(recs), st, files)
	}
	// Not t.Parallel: other tests' files would blur the count.
	if after := open(); after-before > files/10 {
		t.Fatalf("%d files open after reading %d, %d before", after, files, before)
	}
}

// BenchmarkPasswordFiles reads a directory of per-prefix files shaped like
// the Pwned Passwords downloader's (a million of them in a full download;
// 1,000 here, 64 lines each). B/op is per file read: a buffer allocated
// a file, not reused, shows up here (it was 256 KiB a file).
func BenchmarkPasswordFiles(b *testing.B) {
	dir := b.TempDir()
	const files, lines = 1000, 64
	for i := range files {
		var text strings.Builder
		for j := range lines {
			fmt.Fprintf(&text, "%035X:%d\r\n", uint64(j)<<40|uint64(i), j+1)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05X.txt", i)), []byte(text.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]breachd.PasswordRecord, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		rd, err := dump.NewPasswordReader(b.Context(), dir, nil, breachd.SHA1, dump.PasswordHashes)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			recs, err := rd.Read(buf)
			n += len(recs)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		rd.Close()
		if n != files*lines {
			b.Fatalf("%d records, want %d", n, files*lines)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*files), "ns/file")
}

// FuzzPasswordBlocks: wherever the blocks' edges fall, any password dump
// reads as it does in the default blocks (the records, the rejected lines'
// numbers and reasons, the counts, the error), every row is accepted or
// rejected, and each record of a HASH:COUNT dump is a hash its text holds.
func FuzzPasswordBlocks(f *testing.F) {
	const h = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"
	f.Add(h+":3\r\n\n  "+h+":1  \r\r\nzz\n"+h[:39]+"1:0\n"+h+"\n"+h+":x", false, false, uint16(3))
	f.Add("password\r\n p \n\n\r\nhunter2\r\r\nlast", true, true, uint16(1))
	f.Add(strings.Repeat("7", dump.MaxLineBytes)+"\n"+h+":1\n", false, false, uint16(700))
	f.Add("8846F7EAEE8FB117AD06BDD830B7586C:12\n8846f7eaee8fb117ad06bdd830b7586c\n", false, true, uint16(9))
	f.Fuzz(func(t *testing.T, text string, plain, ntlm bool, size uint16) {
		format, k := dump.PasswordHashes, breachd.SHA1
		if plain {
			format = dump.PasswordPlain
		}
		if ntlm {
			k = breachd.NTLM
		}
		want, wantSt, wantRejects, wantErr := readPasswordBlocks(t, "-", text, k, format, 0)
		recs, st, rejects, err := readPasswordBlocks(t, "-", text, k, format, 1+int(size))
		if !slices.Equal(recs, want) || st != wantSt || !slices.Equal(rejects, wantRejects) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("blocks of %d bytes: %d records, stats %+v, rejects %q, error %v; in the default blocks %d, %+v, %q, %v",
				1+int(size), len(recs), st, rejects, err, len(want), wantSt, wantRejects, wantErr)
		}
		if int64(len(want)) != wantSt.Accepted || int64(len(wantRejects)) != wantSt.Rejected || wantSt.Rows != wantSt.Accepted+wantSt.Rejected {
			t.Fatalf("stats %+v, %d records, %d rejections", wantSt, len(want), len(wantRejects))
		}
		if format == dump.PasswordHashes {
			upper := strings.ToUpper(text)
			for _, r := range want {
				if x := hexOf(r, k); !strings.Contains(upper, x) {
					t.Fatalf("record %s is not in the dump", x)
				}
			}
		}
	})
}

// TestFirstLine: a password file is one password however it was saved.
func TestFirstLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in string }{
		{"LF", "hunter2 ü\nsecond\n"},
		{"no line end", "hunter2 ü"},
		{"CRLF (Notepad)", "hunter2 ü\r\nsecond\r\n"},
		{"CR alone", "hunter2 ü\rsecond\r"},
		{"UTF-8 byte order mark (Notepad)", "\xef\xbb\xbfhunter2 ü\r\n"},
		{"UTF-16LE (Windows PowerShell 5's >)", utf16Text(true, "hunter2 ü\r\n")},
		{"UTF-16BE", utf16Text(false, "hunter2 ü\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dump.FirstLine(strings.NewReader(tc.in))
			if err != nil || got != "hunter2 ü" {
				t.Fatalf("FirstLine(%q) = %q, %v; want %q", tc.in, got, err, "hunter2 ü")
			}
		})
	}
}
