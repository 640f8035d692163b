package dump_test

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/dump"
)

func readPasswords(t *testing.T, path string, in string, k breachd.HashKind, f dump.PasswordFormat) ([]breachd.PasswordRecord, dump.Stats, []string) {
	t.Helper()
	rd, err := dump.NewPasswordReader(path, strings.NewReader(in), k, f)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
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
			return out, rd.Stats(), rejects
		}
		if err != nil {
			t.Fatal(err)
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
	if _, _, rejects := readPasswords(t, "-", "caf\xe9\n", breachd.NTLM, dump.PasswordPlain); len(rejects) != 1 {
		t.Errorf("invalid UTF-8 for NTLM: rejects %q, want 1", rejects)
	}
}
