package synth_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/dump"
	"github.com/breachd/breachd/synth"
)

func TestDeterministic(t *testing.T) {
	t.Parallel()
	var a, b, c bytes.Buffer
	if _, err := synth.Generate(&a, synth.Options{Seed: 1, Records: 2000}); err != nil {
		t.Fatal(err)
	}
	synth.Generate(&b, synth.Options{Seed: 1, Records: 2000})
	synth.Generate(&c, synth.Options{Seed: 2, Records: 2000})
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("same seed gave different dumps")
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Fatal("different seeds gave the same dump")
	}
}

// TestReaderFindsEveryAccount checks the generator's ground truth against the
// dump reader: every account is read, malformed rows are rejected, and the
// dirty rows resolve to accounts that exist.
func TestReaderFindsEveryAccount(t *testing.T) {
	t.Parallel()
	var data, accounts bytes.Buffer
	st, err := synth.Generate(&data, synth.Options{Seed: 7, Records: 20000, Accounts: &accounts})
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows != 20000 || st.Malformed == 0 || st.Duplicates == 0 || st.Accounts+st.Duplicates+st.Malformed != st.Rows {
		t.Fatalf("stats = %+v", st)
	}
	if !strings.HasPrefix(data.String(), synth.Header+"\n") {
		t.Fatalf("dump does not start with the header")
	}
	want := map[breachd.Digest]bool{}
	sc := bufio.NewScanner(&accounts)
	for sc.Scan() {
		c, err := canon.Email(sc.Text())
		if err != nil || c != sc.Text() {
			t.Fatalf("ground truth %q is not canonical: %q, %v", sc.Text(), c, err)
		}
		want[sha256.Sum256([]byte(c))] = true
	}
	if len(want) != st.Accounts {
		t.Fatalf("%d distinct accounts in ground truth, stats say %d", len(want), st.Accounts)
	}
	r, err := dump.NewReader(&data, dump.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[breachd.Digest]bool{}
	buf := make([]breachd.Digest, 0, 1000)
	for {
		ds, err := r.Read(buf)
		for _, d := range ds {
			if !want[d] {
				t.Fatalf("reader produced a digest %x that is not a generated account", d)
			}
			got[d] = true
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("reader found %d accounts, want %d", len(got), len(want))
	}
	if rs := r.Stats(); rs.Rejected != int64(st.Malformed) || rs.Rows != int64(st.Rows) {
		t.Fatalf("reader stats %+v, generator %+v", rs, st)
	}
}

func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		synth.Generate(io.Discard, synth.Options{Seed: 1, Records: 10000})
	}
}

// TestEveryPrefix: with EveryPrefix, each 2.5-byte prefix's hashes take
// its sixteen 3-byte prefixes in turn (so 16Mi hashes cover all 16Mi, as
// pwngen needs); here a prefix's one hash takes the first. Without it, the
// low nibbles are random. (The planted known passwords add lines of their
// own: their prefixes are left out.)
func TestEveryPrefix(t *testing.T) {
	t.Parallel()
	for _, every := range []bool{true, false} {
		var buf bytes.Buffer
		if err := synth.WritePwned(&buf, synth.PwnedOptions{Seed: 3, Hashes: 1 << 16, Kind: breachd.SHA1, EveryPrefix: every}); err != nil {
			t.Fatal(err)
		}
		nibbles := make([]uint16, 1<<20) // a bit for each low nibble seen under each 2.5-byte prefix
		lines := make([]uint8, 1<<20)
		for line := range bytes.Lines(buf.Bytes()) {
			var p [3]byte
			if _, err := hex.Decode(p[:], line[:6]); err != nil {
				t.Fatal(err)
			}
			pre := int(p[0])<<12 | int(p[1])<<4 | int(p[2])>>4
			nibbles[pre] |= 1 << (p[2] & 15)
			lines[pre]++
		}
		first := 0
		for pre := range nibbles {
			if lines[pre] == 1 && nibbles[pre] == 1 {
				first++
			}
		}
		if every && first < 1<<16-10 || !every && first > 1<<13 {
			t.Fatalf("EveryPrefix %v: %d of the 64Ki hashes are under their 2.5-byte prefix's first 3-byte prefix", every, first)
		}
	}
}
