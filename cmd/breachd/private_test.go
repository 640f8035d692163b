package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/blind"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/client"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// TestPrivateDaemon: a corpus imported plain, converted by 'breachd rekey
// --private' and served with privacy.private_lookups: 10,000 known and
// 10,000 unknown addresses answer the same through plain bulk checks and
// private checks in bulk (client.CheckPrivateDigests), and 1,000 of each
// through private checks one at a time (client.CheckPrivate); every bucket
// at the advertised prefix length holds at least privacy.bucket_min of
// the corpus's accounts; and answers for random buckets, through gRPC and
// HTTP, are all of a size class.
func TestPrivateDaemon(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	data, sega, known, unknown := plainCorpus(t, tmp, 21)
	keyFile := filepath.Join(tmp, "index.key")
	runOK(t, "keys", "index", "create", "--out", keyFile)
	if out := runOK(t, "rekey", "--data", data, "--index-key", keyFile, "--private"); !strings.Contains(out, "private_lookups") {
		t.Fatalf("rekey --private: %s", out)
	}
	cfg := filepath.Join(tmp, "breachd.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "privacy:\n  index_key_file: %s\n  private_lookups: true\n  bucket_min: 100\nhttp:\n  addr: 127.0.0.1:0\n", keyFile), 0o600)
	d := startDaemon(t, data, "--config", cfg)
	conn := dial(t, d.addr)
	cl := client.New(conn, client.WithInFlight(4))
	ctx := t.Context()

	// The buckets, over the whole corpus.
	var info *breachdv1.PrivateLookupInfo
	for range 500 { // counted in the background after the start
		var err error
		if info, err = cl.PrivateInfo(ctx); err == nil {
			break
		}
	}
	if info == nil || info.GetBucketMin() != 100 || info.GetPrefixBits() < 5 {
		t.Fatalf("private lookup info %v", info)
	}
	all := map[breachd.Digest]bool{}
	for _, e := range sega.accounts {
		dg, err := canon.Digest(e)
		if err == nil {
			all[dg] = true
		}
	}
	if info.GetAccounts() != uint64(len(all)) {
		t.Fatalf("info counts %d accounts, the corpus holds %d", info.GetAccounts(), len(all))
	}
	bits := int(info.GetPrefixBits())
	buckets := map[string]int{}
	for dg := range all {
		buckets[string(breachd.PrefixOf(dg, bits))]++
	}
	if len(buckets) != 1<<bits {
		t.Fatalf("%d of %d buckets at %d bits hold accounts", len(buckets), 1<<bits, bits)
	}
	for p, n := range buckets {
		if n < 100 {
			t.Fatalf("bucket %x holds %d accounts", p, n)
		}
	}

	// The same answers, three ways.
	emails := append(slices.Clone(known), unknown...)
	plain, _ := checkAll(t, conn, emails)
	for i, e := range emails {
		if i%10000 >= 1000 {
			continue // singles: 1,000 known and 1,000 unknown
		}
		r, err := cl.CheckPrivate(ctx, e)
		if err != nil {
			t.Fatalf("CheckPrivate(%d) = %v", i, err)
		}
		if got := breachNames(r.Breaches); !slices.Equal(got, plain[i]) {
			t.Fatalf("%s: private %v, plain %v", e, got, plain[i])
		}
	}
	// Read-your-writes: the answer's version is the one asked for, or
	// the check waits (here, for a version that never comes).
	pr, err := cl.CheckPrivate(client.AtLeast(ctx, 1), known[0])
	if err != nil || pr.CorpusVersion == 0 {
		t.Fatalf("CheckPrivate at its version = %+v, %v", pr, err)
	}
	short, cancel := context.WithTimeout(client.AtLeast(ctx, pr.CorpusVersion+1), 300*time.Millisecond)
	defer cancel()
	if r, err := cl.CheckPrivate(short, known[0]); status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Unavailable {
		t.Fatalf("CheckPrivate for a version that never comes = %+v, %v", r, err)
	}
	// In bulk, every fifth address: 4,000 private checks, in order.
	const stride = 5
	digests := func(yield func(breachd.Digest) bool) {
		for i := 0; i < len(emails); i += stride {
			dg, _ := canon.Digest(emails[i])
			if !yield(dg) {
				return
			}
		}
	}
	n := 0
	for r, err := range cl.CheckPrivateDigests(ctx, digests) {
		if err != nil {
			t.Fatal(err)
		}
		if i := n * stride; r.Index != int64(n) || !slices.Equal(r.BreachNames, plain[i]) {
			t.Fatalf("bulk private %d (%s): %v, plain %v", r.Index, emails[i], r.BreachNames, plain[i])
		}
		n++
	}
	if want := (len(emails) + stride - 1) / stride; n != want || len(known) < 10000 || len(unknown) < 10000 {
		t.Fatalf("bulk private answered %d of %d (%d known, %d unknown)", n, want, len(known), len(unknown))
	}

	// Size classes, gRPC and HTTP.
	expo := breachdv1.NewExposureServiceClient(conn)
	sizes := map[int]int{}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		var dg breachd.Digest
		for i := range dg {
			dg[i] = byte(rng.Uint32())
		}
		r, err := blind.New(dg, bits)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := expo.CheckPrivate(ctx, &breachdv1.CheckPrivateRequest{Prefix: r.Query.Prefix, PrefixBits: uint32(bits), BlindedElement: r.Query.Blinded})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := expo.CheckPrivate(ctx, &breachdv1.CheckPrivateRequest{Prefix: r.Query.Prefix, PrefixBits: uint32(bits), BlindedElement: r.Query.Blinded,
			MinCorpusVersion: resp.GetCorpusVersion() + 1}); status.Code(err) != codes.Unavailable {
			t.Fatalf("a private check asking a version beyond the daemon's = %v, want UNAVAILABLE", err)
		}
		if len(resp.GetEntries()) < 100 {
			t.Fatalf("a bucket answered %d entries", len(resp.GetEntries()))
		}
		sizes[proto.Size(resp)]++
		body, _ := json.Marshal(map[string]any{"prefix": r.Query.Prefix, "prefix_bits": bits, "blinded_element": r.Query.Blinded})
		hr, err := http.Post(d.http+"/v1/private/check", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(hr.Body)
		hr.Body.Close()
		if hr.StatusCode != http.StatusOK || !json.Valid(b) || len(b) != int(hr.ContentLength) {
			t.Fatalf("POST /v1/private/check = %d %.200s", hr.StatusCode, b)
		}
		sizes[len(b)]++
	}
	// A stale prefix length: gRPC's FAILED_PRECONDITION is HTTP's 409,
	// not a 503 to retry.
	r, _ := blind.New(breachd.Digest{}, bits+1)
	body, _ := json.Marshal(map[string]any{"prefix": r.Query.Prefix, "prefix_bits": bits + 1, "blinded_element": r.Query.Blinded})
	hr, err := http.Post(d.http+"/v1/private/check", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != http.StatusConflict {
		t.Fatalf("a check at %d bits over HTTP: %d, want 409", bits+1, hr.StatusCode)
	}
	if _, err := expo.CheckPrivate(ctx, &breachdv1.CheckPrivateRequest{Prefix: r.Query.Prefix, PrefixBits: uint32(bits + 1), BlindedElement: r.Query.Blinded}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("a check at %d bits over gRPC: %v, want FailedPrecondition", bits+1, err)
	}
	for size := range sizes {
		if size != breachd.PaddedSize(size) {
			t.Fatalf("an answer of %d bytes, not a size class; sizes seen %v", size, sizes)
		}
	}
	t.Logf("answer sizes over 100 buckets, gRPC and HTTP: %v", sizes)
}

func breachNames(bs []client.BreachSummary) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}
