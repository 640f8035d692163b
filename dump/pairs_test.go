package dump_test

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/dump"
)

func pair(t *testing.T, email, password string) breachd.PairRecord {
	t.Helper()
	d, err := canon.Digest(email)
	if err != nil {
		t.Fatal(err)
	}
	return breachd.PairRecord{Account: d, Password: sha1.Sum([]byte(password))}
}

func TestPairReader(t *testing.T) {
	lena, bob := pair(t, "lschmidt@hotmail.com", "hunter2"), pair(t, "bob@example.com", "pa:ss word")
	hashed := fmt.Sprintf("%x:%X\n%x:%x\n", lena.Account[:], lena.Password[:], bob.Account[:], bob.Password[:])
	tests := []struct {
		name   string
		in     string
		opts   dump.PairOptions
		format dump.Format
		want   []breachd.PairRecord
		rejs   []rejection
	}{
		{
			name:   "combo, dirty lines rejected with their numbers",
			in:     "LSchmidt@Hotmail.com:hunter2\r\n\nno-separator\nbob@example.com:pa:ss word\nnot-an-address:secret\nempty@example.com:\n7,a@b.com:x\n",
			format: dump.FormatCombo,
			want:   []breachd.PairRecord{lena, bob},
			rejs:   []rejection{{3, "no ':' between the account and its password"}, {5, ""}, {6, "empty password"}, {7, ""}},
		},
		{
			name:   "CSV with email and password columns, in any order",
			in:     "id,password,Email\n1,hunter2,lschmidt@hotmail.com\n2,\"pa:ss word\",bob@example.com\n3,,x@example.com\n4,\"unterminated,y@example.com\n",
			format: dump.FormatCSV,
			want:   []breachd.PairRecord{lena, bob},
			rejs:   []rejection{{4, "empty password"}, {5, "malformed CSV: unterminated quote"}},
		},
		{
			name:   "combo with semicolons: a password holding one, and a colon, is read whole",
			in:     "lschmidt@hotmail.com;hunter2\nbob@example.com;pa:ss word\nc@example.com:x;y\n",
			format: dump.FormatCombo,
			want:   []breachd.PairRecord{lena, bob},
			rejs:   []rejection{{3, ""}}, // "c@example.com:x" is no address
		},
		{
			name:   "combo with pipes; a local part may hold one",
			in:     "lschmidt@hotmail.com|hunter2\nbob@example.com|pa:ss word\nno-separator\na|b@example.com|pw|x\n",
			format: dump.FormatCombo,
			want:   []breachd.PairRecord{lena, bob, pair(t, "a|b@example.com", "pw|x")},
			rejs:   []rejection{{3, "no '|' between the account and its password"}},
		},
		{
			name:   "combo with tabs, IDN domain",
			in:     "lschmidt@hotmail.com\thunter2\nbob@example.com\tpa:ss word\nhans@bücher.de\t\n",
			format: dump.FormatCombo,
			want:   []breachd.PairRecord{lena, bob},
			rejs:   []rejection{{3, "empty password"}},
		},
		{
			name:   "combo with commas, no header",
			in:     "lschmidt@hotmail.com,hunter2\nbob@example.com,pa:ss word\n",
			format: dump.FormatCombo,
			want:   []breachd.PairRecord{lena, bob},
		},
		{
			name: "JSON Lines with email and password fields",
			in: `{"_id":1,"Email":"lschmidt@hotmail.com","password":"hunter2","name":"Lena"}` + "\n" +
				`{"_id":2,"email":"bob@example.com","password":"pa:ss word"}` + "\n" +
				`{"_id":3,"email":"c@example.com","password":123456}` + "\n" +
				`{"_id":4,"email":"d@example.com"}` + "\n" +
				`{"_id":5,"email":"e@example.com","password":""}` + "\n",
			format: dump.FormatJSONL,
			want:   []breachd.PairRecord{lena, bob},
			rejs:   []rejection{{3, `the "password" field is not a string`}, {4, `no "password" field`}, {5, "empty password"}},
		},
		{
			name:   "JSON Lines, nested fields named",
			in:     `{"_source":{"user":{"mail":"lschmidt@hotmail.com"},"pw":"hunter2"}}` + "\n",
			opts:   dump.PairOptions{Column: "_source.user.mail", PasswordColumn: "_source.pw"},
			format: dump.FormatJSONL,
			want:   []breachd.PairRecord{lena},
		},
		{
			name:   "semicolon-separated CSV",
			in:     "email;password\nlschmidt@hotmail.com;hunter2\nbob@example.com;\"pa:ss word\"\n",
			format: dump.FormatCSV,
			want:   []breachd.PairRecord{lena, bob},
		},
		{
			name:   "CSV with other column names",
			in:     "mail,pw\nlschmidt@hotmail.com,hunter2\n",
			opts:   dump.PairOptions{Format: dump.FormatCSV, Column: "mail", PasswordColumn: "pw"},
			format: dump.FormatCSV,
			want:   []breachd.PairRecord{lena},
		},
		{
			name:   "pre-hashed pairs, either case",
			in:     hashed + "abc:def\n",
			format: dump.FormatPairHashes,
			want:   []breachd.PairRecord{lena, bob},
			rejs:   []rejection{{3, ""}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := dump.NewPairReader(strings.NewReader(tt.in), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var rejs []rejection
			r.OnReject = func(line int64, reason string) { rejs = append(rejs, rejection{line, reason}) }
			var got []breachd.PairRecord
			buf := make([]breachd.PairRecord, 0, 2)
			for {
				b, err := r.ReadPairs(buf)
				got = append(got, b...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if r.Format() != tt.format {
				t.Errorf("format %s, want %s", r.Format(), tt.format)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("pairs = %d records, want %d (or different ones)", len(got), len(tt.want))
			}
			if len(rejs) != len(tt.rejs) {
				t.Fatalf("rejections %v, want %v", rejs, tt.rejs)
			}
			for i, want := range tt.rejs {
				if rejs[i].Line != want.Line || (want.Reason != "" && rejs[i].Reason != want.Reason) {
					t.Errorf("rejection %d = %+v, want %+v", i, rejs[i], want)
				}
				if strings.Contains(rejs[i].Reason, "secret") || strings.Contains(rejs[i].Reason, "hunter2") {
					t.Errorf("a rejection quotes the password: %q", rejs[i].Reason)
				}
			}
			if st := r.Stats(); st.Accepted != int64(len(tt.want)) || st.Rejected != int64(len(tt.rejs)) {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestPairReaderNoPasswordColumn(t *testing.T) {
	_, err := dump.NewPairReader(strings.NewReader("email,passwd_hash\na@b.com,x\n"), dump.PairOptions{})
	if !errors.Is(err, dump.ErrNoColumn) || !strings.Contains(err.Error(), "--password-column passwd_hash") {
		t.Fatalf("a CSV without a password column = %v; want ErrNoColumn naming --password-column passwd_hash", err)
	}
	for in, want := range map[string]string{
		`{"email":"a@b.com","passwd":"x"}`:            "pass --password-column passwd",
		`{"email":"a@b.com","user":{"password":"x"}}`: "pass --password-column user.password",
	} {
		_, err = dump.NewPairReader(strings.NewReader(in+"\n"), dump.PairOptions{})
		if !errors.Is(err, dump.ErrNoColumn) || !strings.Contains(err.Error(), want) {
			t.Fatalf("JSON Lines without a password field = %v; want ErrNoColumn saying %q", err, want)
		}
	}
	if _, err := dump.NewReader(strings.NewReader("a@b.com:x\n"), dump.Options{Format: dump.FormatCombo}); err == nil {
		t.Fatal("an email import of a combolist format was accepted")
	}
}

// FuzzPairReader: a combolist row of any account and password, in each
// format, is accepted or rejected (the reader never fails on content, and
// its counts add up), and no rejection quotes the password.
func FuzzPairReader(f *testing.F) {
	f.Add("LSchmidt@Hotmail.com", "hunter2", "no-separator", 0)
	f.Add("a@b.com", "pa:ss word", "3,,x@example.com", 1)
	f.Add("\"a@b.com", "x\"y", "4,\"unterminated,y@example.com", 1)
	f.Add(strings.Repeat("ab", 32), "zz", "abc:def", 2)
	f.Fuzz(func(t *testing.T, account, password, other string, format int) {
		const mark = "Zq9" // starts and ends every password; nothing else holds it
		if strings.Contains(account+other, mark[:1]) {
			return
		}
		password = mark + password + mark
		var text string
		switch uint(format) % 3 {
		case 0:
			text = account + ":" + password + "\n" + other
		case 1:
			text = "email,password\n" + account + "," + password + "\n" + other
		case 2:
			text = fmt.Sprintf("%x:%s\n%s", sha1.Sum([]byte(account)), password, other)
		}
		r, err := dump.NewPairReader(strings.NewReader(text), dump.PairOptions{})
		if err != nil {
			return // a header problem is reported up front
		}
		var rejected int64
		r.OnReject = func(_ int64, reason string) {
			rejected++
			if strings.Contains(reason, mark) {
				t.Fatalf("a rejection quotes the password: %q", reason)
			}
		}
		var n int64
		for buf := make([]breachd.PairRecord, 0, 3); ; {
			got, err := r.ReadPairs(buf)
			n += int64(len(got))
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("ReadPairs = %v", err)
			}
		}
		if st := r.Stats(); st.Accepted != n || st.Rejected != rejected || st.Rows != st.Accepted+st.Rejected {
			t.Fatalf("stats %+v, %d pairs, %d rejections", st, n, rejected)
		}
	})
}
