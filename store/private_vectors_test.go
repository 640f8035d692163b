package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/blind"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// privateVectors are docs/PRIVATE-LOOKUP.md's test vectors: the JSON
// between its two "vectors" markers.
type privateVectors struct {
	IndexKey  string   `json:"index_key"`
	Corpus    []string `json:"corpus"` // canonical addresses, all in breach "Alpha"
	BucketMin int      `json:"bucket_min"`
	Checks    []struct {
		Email        string   `json:"email"`
		Digest       string   `json:"digest"`
		PrefixBits   int      `json:"prefix_bits"`
		Prefix       string   `json:"prefix"`
		Blind        string   `json:"blind"`
		Blinded      string   `json:"blinded_element"`
		Evaluated    string   `json:"evaluated_element"`
		Value        string   `json:"value"`
		BucketValues []string `json:"bucket_values"`
		Exposed      bool     `json:"exposed"`
	} `json:"checks"`
}

// TestPrivateVectors checks the specification's vectors against the
// server (a real corpus) and the client (package blind): the blinded and
// evaluated elements, the account's value, and the whole bucket's answer.
// With BREACHD_WRITE_VECTORS=1 it prints the vectors the code computes.
func TestPrivateVectors(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/PRIVATE-LOOKUP.md")
	if err != nil {
		t.Fatal(err)
	}
	const marker = "<!-- vectors -->"
	parts := bytes.Split(doc, []byte(marker))
	if len(parts) != 3 {
		t.Fatalf("docs/PRIVATE-LOOKUP.md has %d vector markers, want 2", len(parts)-1)
	}
	block := bytes.TrimSpace(parts[1])
	block = bytes.TrimSuffix(bytes.TrimPrefix(block, []byte("```json")), []byte("```"))
	var v privateVectors
	if err := json.Unmarshal(block, &v); err != nil {
		t.Fatalf("the vectors do not parse: %v", err)
	}
	keyFile := filepath.Join(t.TempDir(), "index.key")
	os.WriteFile(keyFile, []byte(v.IndexKey+"\n"), 0o600)
	key, err := store.ReadIndexKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s := openPrivate(t, t.TempDir(), key, v.BucketMin)
	defer s.Close()
	var ds []breachd.Digest
	for _, e := range v.Corpus {
		ds = append(ds, sha256.Sum256([]byte(e)))
	}
	importAll(t, s, storetest.Breach("Alpha"), ds, 10)
	info := waitBuckets(t, s)
	write := os.Getenv("BREACHD_WRITE_VECTORS") != ""
	for i := range v.Checks {
		c := &v.Checks[i]
		d := sha256.Sum256([]byte(c.Email))
		scalar, _ := hex.DecodeString(c.Blind)
		r, err := blind.NewWithBlind(d, info.PrefixBits, scalar)
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.PrivateCheck(context.Background(), r.Query)
		if err != nil {
			t.Fatal(err)
		}
		val, err := r.Value(a.Evaluated)
		if err != nil {
			t.Fatal(err)
		}
		bs, _ := r.Match(a)
		var bucket []string
		for _, e := range a.Entries {
			bucket = append(bucket, hex.EncodeToString(e.Value[:]))
		}
		got := struct{ digest, prefix, blinded, evaluated, value string }{hex.EncodeToString(d[:]), hex.EncodeToString(r.Query.Prefix),
			hex.EncodeToString(r.Query.Blinded), hex.EncodeToString(a.Evaluated), hex.EncodeToString(val[:])}
		if write {
			c.Digest, c.PrefixBits, c.Prefix, c.Blinded, c.Evaluated, c.Value, c.BucketValues, c.Exposed =
				got.digest, info.PrefixBits, got.prefix, got.blinded, got.evaluated, got.value, bucket, len(bs) > 0
			continue
		}
		switch {
		case got.digest != c.Digest || info.PrefixBits != c.PrefixBits || got.prefix != c.Prefix:
			t.Errorf("%s: digest %s, prefix %s at %d bits; the vectors say %s, %s at %d", c.Email, got.digest, got.prefix, info.PrefixBits, c.Digest, c.Prefix, c.PrefixBits)
		case got.blinded != c.Blinded:
			t.Errorf("%s: blinded element %s, want %s", c.Email, got.blinded, c.Blinded)
		case got.evaluated != c.Evaluated:
			t.Errorf("%s: evaluated element %s, want %s", c.Email, got.evaluated, c.Evaluated)
		case got.value != c.Value:
			t.Errorf("%s: value %s, want %s", c.Email, got.value, c.Value)
		case !equalStrings(bucket, c.BucketValues) || (len(bs) > 0) != c.Exposed:
			t.Errorf("%s: bucket %v (exposed %v), want %v (%v)", c.Email, bucket, len(bs) > 0, c.BucketValues, c.Exposed)
		}
	}
	if write {
		out, _ := json.MarshalIndent(v, "", "  ")
		t.Logf("vectors:\n%s", out)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
