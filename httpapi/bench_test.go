package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/httpapi"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/synth"
)

// discard is the least a ResponseWriter can be, so that the benchmark
// measures the handler, not a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkRange measures a /range answer's server work (routing, the
// range read, formatting, padding) on a synthetic corpus of 2M SHA-1
// hashes (about 2 a prefix; bench/range.sh measures 10M and 100M over
// real HTTP).
func BenchmarkRange(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	// BREACHD_RANGE_HASHES sizes the corpus (2M: about 2 lines an answer;
	// issue 21's 33.5M: 32): allocations a request must not grow with it.
	hashes := 2_000_000
	if n, err := strconv.Atoi(os.Getenv("BREACHD_RANGE_HASHES")); err == nil && n > 0 {
		hashes = n
	}
	var buf bytes.Buffer
	if err := synth.WritePwned(&buf, synth.PwnedOptions{Seed: 1, Hashes: hashes, Kind: breachd.SHA1}); err != nil {
		b.Fatal(err)
	}
	o := store.DefaultOptions()
	pw, err := store.OpenPasswords(ctx, store.PasswordDir(dir, breachd.SHA1), breachd.SHA1, o)
	if err != nil {
		b.Fatal(err)
	}
	defer pw.Close()
	recs := func(yield func([]breachd.PasswordRecord, error) bool) {
		sc := bufio.NewScanner(&buf)
		batch := make([]breachd.PasswordRecord, 0, breachd.MaxBatch)
		for sc.Scan() {
			l := sc.Bytes()
			var r breachd.PasswordRecord
			hex.Decode(r.Hash[:20], l[:40])
			fmt.Sscan(string(l[41:]), &r.Count)
			if batch = append(batch, r); len(batch) == cap(batch) {
				if !yield(batch, nil) {
					return
				}
				batch = batch[:0]
			}
		}
		yield(batch, nil)
	}
	if _, err := pw.Import(ctx, breachd.Breach{Name: "PP", Title: "PP"}, uint64(hashes), recs); err != nil {
		b.Fatal(err)
	}
	api, err := httpapi.New(service.New(nil, service.WithPasswords(breachd.SHA1, pw)), httpapi.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, padded := range []bool{false, true} {
		b.Run(fmt.Sprintf("padded=%v", padded), func(b *testing.B) {
			reqs := make([]*http.Request, 4096)
			for i := range reqs {
				r, _ := http.NewRequest("GET", fmt.Sprintf("/range/%05X", (i*7919)&(1<<20-1)), nil)
				r.Header.Set("User-Agent", "bench")
				if padded {
					r.Header.Set("Add-Padding", "true")
				}
				reqs[i] = r
			}
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				clear(w.h)
				api.ServeHTTP(w, reqs[i%len(reqs)])
				i++
			}
		})
	}
}
