package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
)

// benchKeys is the corpus size of the store benchmarks: the Sega Pass count
// by default; BREACHD_BENCH_KEYS overrides it (e.g. 10000000).
func benchKeys(tb testing.TB) int {
	if s := os.Getenv("BREACHD_BENCH_KEYS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			tb.Fatalf("BREACHD_BENCH_KEYS: %v", err)
		}
		return n
	}
	return 1_290_775
}

var (
	benchOnce  sync.Once
	benchDir   string
	benchErr   error
	benchBuilt = map[string]string{} // options name -> directory
	benchMu    sync.Mutex
)

// benchStore returns a store of n keys, digests("bench", n), built once per
// process and options; it is reopened for each benchmark.
func benchStore(b *testing.B, name string, opts store.Options) (*store.Store, []breachd.Digest) {
	b.Helper()
	n := benchKeys(b)
	ds := digests("bench", n)
	benchOnce.Do(func() { benchDir, benchErr = os.MkdirTemp("", "breachd-bench") })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	benchMu.Lock()
	defer benchMu.Unlock()
	dir, ok := benchBuilt[name]
	if !ok {
		dir = filepath.Join(benchDir, fmt.Sprintf("%s-%d", name, n))
		s, err := store.Open(dir, opts)
		if err != nil {
			b.Fatal(err)
		}
		importAll(b, s, breach("Bench"), ds, 100_000)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		benchBuilt[name] = dir
	}
	s, err := store.Open(dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, ds
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// BenchmarkLookup measures store lookups at benchKeys keys: absent digests
// (the filter answers), present digests (Badger confirms), and a stream of
// 95% absent, 5% present.
func BenchmarkLookup(b *testing.B) {
	configs := []struct {
		name string
		opts store.Options
	}{
		{"default", store.Options{}},
	}
	if os.Getenv("BREACHD_BENCH_OPTIONS") != "" {
		configs = append(configs,
			struct {
				name string
				opts store.Options
			}{"nocache", store.Options{BlockCacheSize: -1}},
			struct {
				name string
				opts store.Options
			}{"block1k", store.Options{BlockSize: 1 << 10}},
			struct {
				name string
				opts store.Options
			}{"block1k-nocache", store.Options{BlockSize: 1 << 10, BlockCacheSize: -1}},
		)
	}
	absent := digests("absent", 1<<16)
	for _, cfg := range configs {
		s, present := benchStore(b, cfg.name, cfg.opts)
		keys := fmt.Sprintf("keys=%s", human(len(present)))
		mixed := make([]breachd.Digest, 1<<16)
		for i := range mixed {
			if i%20 == 0 {
				mixed[i] = present[(i*7919)%len(present)]
			} else {
				mixed[i] = absent[i]
			}
		}
		for _, bc := range []struct {
			name string
			ds   []breachd.Digest
		}{
			{"absent", absent},
			{"present", present},
			{"mixed95", mixed},
		} {
			b.Run(fmt.Sprintf("opts=%s/%s/%s", cfg.name, keys, bc.name), func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, _, err := s.Lookup(ctx, bc.ds[(i*7919)%len(bc.ds)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run(fmt.Sprintf("opts=%s/%s/%s/parallel", cfg.name, keys, bc.name), func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						if _, _, err := s.Lookup(ctx, bc.ds[(i*7919)%len(bc.ds)]); err != nil {
							b.Error(err)
							return
						}
						i++
					}
				})
			})
		}
	}
}

func human(n int) string {
	switch {
	case n >= 1_000_000:
		return strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64)[:min(4, len(strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64)))] + "M"
	case n >= 1000:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}
