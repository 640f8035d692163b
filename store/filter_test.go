package store

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

func key(prefix byte, i int) []byte {
	var b [9]byte
	b[0] = prefix
	binary.BigEndian.PutUint64(b[1:], uint64(i))
	s := sha256.Sum256(b[:])
	return s[:]
}

func TestBlockedSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n                  uint64
		fpr                float64
		minBits, maxBits   float64 // bits per key
		minProbes, maxProb int
	}{
		// A plain Bloom filter needs 9.6 bits per key at 1%, 14.4 at 0.1%
		// and 28.8 at 1e-6; blocking costs some more.
		{1_000_000, 0.01, 9.6, 12, 5, 9},
		{2_000_000, 0.001, 14.4, 17.5, 8, 13},
		{100_000_000, 0.001, 14.4, 17.5, 8, 13},
		{1_000_000, 1e-6, 28.8, 40, 15, maxProbes},
	} {
		blocks, k := blockedSize(tc.n, tc.fpr)
		perKey := float64(blocks*blockBits) / float64(tc.n)
		if perKey < tc.minBits || perKey > tc.maxBits || k < tc.minProbes || k > tc.maxProb {
			t.Errorf("blockedSize(%d, %g) = %.2f bits per key, %d probes; want %.1f..%.1f bits, %d..%d probes",
				tc.n, tc.fpr, perKey, k, tc.minBits, tc.maxBits, tc.minProbes, tc.maxProb)
		}
		t.Logf("n=%d fpr=%g: %.2f bits per key, %d probes", tc.n, tc.fpr, perKey, k)
		if got := blockedFPR(blocks, k, tc.n); got > tc.fpr {
			t.Errorf("blockedFPR at the chosen shape = %g, over the target %g", got, tc.fpr)
		}
	}
}

// TestFilterRates checks that the filter never forgets a key and that its
// measured false-positive rate at capacity is close to the target.
func TestFilterRates(t *testing.T) {
	const n, probes = 200_000, 1_000_000
	for _, fpr := range []float64{0.01, 0.001} {
		f := newFilter(n, fpr)
		for i := range n {
			f.add(key('p', i))
		}
		for i := range n {
			if !f.test(key('p', i)) {
				t.Fatalf("fpr %g: key %d added but not found", fpr, i)
			}
		}
		var fp int
		for i := range probes {
			if f.test(key('a', i)) {
				fp++
			}
		}
		got := float64(fp) / probes
		// The count is binomial: allow five standard deviations around
		// the model's rate, which itself is at most the target.
		want := blockedFPR(f.blocks, f.k, n)
		t.Logf("target %g: measured %.5f, model %.5f", fpr, got, want)
		sd := math.Sqrt(want * (1 - want) / probes)
		if math.Abs(got-want) > 5*sd || got > fpr*1.1 {
			t.Errorf("fpr %g: measured %.5f over %d absent keys, model %.5f (target %g)", fpr, got, probes, want, fpr)
		}
	}
}

func TestFilterSaveLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := newFilter(5000, 0.001)
	for i := range 5000 {
		f.add(key('p', i))
	}
	if _, err := f.save(dir, filterHeader{corpusVersion: 7, keys: 5000}); err != nil {
		t.Fatal(err)
	}
	g, h, _, err := loadFilter(dir)
	if err != nil {
		t.Fatal(err)
	}
	if h.corpusVersion != 7 || h.keys != 5000 || h.capacity != f.cap || h.fpr != f.fpr {
		t.Fatalf("header = %+v", h)
	}
	if g.blocks != f.blocks || g.k != f.k || !g.bf.Equal(f.bf) {
		t.Fatalf("loaded filter differs: %d blocks %d probes, want %d and %d", g.blocks, g.k, f.blocks, f.k)
	}
	for i := range 5000 {
		if !g.test(key('p', i)) {
			t.Fatalf("key %d lost in save and load", i)
		}
	}
}

// TestFilterAddLive checks that addLive sets exactly the bits add does,
// and that lookups reading the filter while it adds (the race detector
// watches) never miss a key added before they began, and see each key
// from the moment its add returned.
func TestFilterAddLive(t *testing.T) {
	t.Parallel()
	for _, fpr := range []float64{0.05, 0.001, 1e-6} { // 8, 16 and 24 probes
		private, live := newFilter(4000, fpr), newFilter(4000, fpr)
		for i := range 2000 {
			private.add(key('p', i))
			live.addLive(key('p', i))
		}
		if !slices.Equal(private.words, live.words) {
			t.Fatalf("fpr %g: addLive set other bits than add", fpr)
		}
		var added atomic.Int64 // keys 'q' 0..added-1 are in
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range 2000 {
				live.addLive(key('q', i))
				added.Store(int64(i + 1))
			}
		}()
		for reading := true; reading; {
			select {
			case <-done:
				reading = false
			default:
			}
			n := int(added.Load())
			for _, k := range [][]byte{key('p', n%2000), key('q', max(n-1, 0))} {
				if n > 0 && !live.test(k) {
					t.Fatalf("fpr %g: a key added before the read was missed", fpr)
				}
			}
		}
		for i := range 2000 {
			private.add(key('q', i))
		}
		if !slices.Equal(private.words, live.words) {
			t.Fatalf("fpr %g: the live filter differs from the private one after the same adds", fpr)
		}
	}
}

// TestFilterLoadRejects covers files that must not be used: an older format
// and a length field inside the encoding that disagrees with the header.
func TestFilterLoadRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := newFilter(5000, 0.001)
	if _, err := f.save(dir, filterHeader{corpusVersion: 1}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filterFile)
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte)
		want   string
	}{
		{"format 2", func(b []byte) { binary.BigEndian.PutUint32(b[8:], 2) }, "format 2, want 5"},
		// Format 3 chose a key's block by its first word little-endian,
		// format 4 put nine-bit locations anywhere in the block: read
		// with today's mapping, either would miss keys it holds.
		{"format 3", func(b []byte) { binary.BigEndian.PutUint32(b[8:], 3) }, "format 3, want 5"},
		{"format 4", func(b []byte) { binary.BigEndian.PutUint32(b[8:], 4) }, "format 4, want 5"},
		{"encoded m", func(b []byte) { binary.BigEndian.PutUint64(b[filterHdrSize:], 512) }, "does not match the header"},
		{"one bit", func(b []byte) { b[len(b)-100] ^= 1 }, "checksum mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := slices.Clone(good)
			tc.damage(b)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := loadFilter(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("loadFilter = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// BenchmarkFilterTest measures the filter alone, full to its capacity, for
// random absent digests: the cost of the lookup fast path without the store.
func BenchmarkFilterTest(b *testing.B) {
	sizes := []uint64{1_290_775, 10_000_000}
	if os.Getenv("BREACHD_BENCH_100M") != "" { // filling it takes half a minute
		sizes = append(sizes, 100_000_000)
	}
	for _, n := range sizes {
		b.Run(human(n), func(b *testing.B) {
			f := newFilter(n, 0.001)
			r := rand.New(rand.NewPCG(n, 1))
			var k [32]byte
			next := func() []byte {
				for i := 0; i < len(k); i += 8 {
					binary.LittleEndian.PutUint64(k[i:], r.Uint64())
				}
				return k[:]
			}
			for range n {
				f.add(next())
			}
			b.ReportAllocs()
			for b.Loop() {
				f.test(next())
			}
		})
	}
}

func human(n uint64) string {
	return "keys=" + strconv.FormatFloat(float64(n)/1e6, 'g', 3, 64) + "M"
}

// TestFilterTestAgrees checks the branch-free test against the definition
// (every one of the key's k locations set), for every probe count the
// shapes use: no key added is missed, and no other key answers otherwise.
func TestFilterTestAgrees(t *testing.T) {
	t.Parallel()
	for _, fpr := range []float64{0.05, 0.001, 1e-6} {
		f := newFilter(5000, fpr)
		for i := range 5000 {
			f.add(key('a', i))
		}
		var maybe int
		for i := range 50_000 {
			k := key('a', i) // the first 5,000 were added
			// The definition: location j is in word j%8 of the block the
			// key's first 8 bytes pick, at the 6 bits j%8 of the 8 bytes
			// after them in round j/8.
			blk, _ := bits.Mul64(binary.BigEndian.Uint64(k), f.blocks)
			want := true
			for j := range f.k {
				src := binary.LittleEndian.Uint64(k[8+8*(j/8):])
				bit := src >> (6 * (j % 8)) & 63
				want = want && f.words[blk*8+uint64(j%8)]&(1<<bit) != 0
			}
			if got := f.test(k); got != want || i < 5000 && !got {
				t.Fatalf("fpr %g, k %d: test(key %d) = %v, want %v", fpr, f.k, i, got, want)
			}
			if want {
				maybe++
			}
		}
		t.Logf("fpr %g: k %d, %d of 45,000 others maybe", fpr, f.k, maybe-5000)
	}
}

// TestFilterLogTorn saves a filter whole, logs two changes, and loads the
// log cut at every byte of the second record and at some of the first:
// the load ends at the last whole record, with its version and every key
// it holds, and an append after a cut one is read back whole.
func TestFilterLogTorn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := newFilter(20000, 0.001)
	for i := range 1000 {
		f.add(key('a', i))
	}
	id, err := f.save(dir, filterHeader{corpusVersion: 1, keys: 1000})
	if err != nil {
		t.Fatal(err)
	}
	logged := func(size int64, prefix byte, v uint64) int64 {
		for i := range 300 {
			f.addLive(key(prefix, i))
		}
		size, err := appendFilterLog(dir, id, size, f, v, 1000+300*(v-1))
		if err != nil {
			t.Fatal(err)
		}
		f.saved()
		return size
	}
	first := logged(0, 'b', 2)
	second := logged(first, 'c', 3)
	whole, err := os.ReadFile(filepath.Join(dir, filterLogFile))
	if err != nil || int64(len(whole)) != second {
		t.Fatalf("log of %d bytes, want %d: %v", len(whole), second, err)
	}
	load := func(cut int64) (*filter, filterHeader, int64) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, filterLogFile), whole[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		g, h, gid, err := loadFilter(dir)
		if err != nil || gid != id {
			t.Fatalf("load: %v (id %+v, want %+v)", err, gid, id)
		}
		h, end, err := replayFilterLog(dir, g, gid, h)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		return g, h, end
	}
	holds := func(g *filter, prefix byte) bool {
		for i := range 300 {
			if !g.test(key(prefix, i)) {
				return false
			}
		}
		return true
	}
	cuts := []int64{0, filterLogHdrSize - 1, filterLogHdrSize, filterLogHdrSize + 10, first - 1}
	for c := first; c <= second; c++ { // every byte near its ends, some between
		if c < first+40 || c > second-40 || c%97 == 0 {
			cuts = append(cuts, c)
		}
	}
	for _, cut := range cuts {
		g, h, end := load(cut)
		switch {
		case cut == second:
			if h.corpusVersion != 3 || h.keys != 1600 || end != second || !holds(g, 'b') || !holds(g, 'c') {
				t.Fatalf("whole log: version %d, keys %d, end %d", h.corpusVersion, h.keys, end)
			}
		case cut >= first:
			if h.corpusVersion != 2 || h.keys != 1300 || end != first || !holds(g, 'b') {
				t.Fatalf("cut at %d: version %d, keys %d, end %d; want the first record's", cut, h.corpusVersion, h.keys, end)
			}
		default:
			if h.corpusVersion != 1 || h.keys != 1000 || (end != 0 && end != filterLogHdrSize) {
				t.Fatalf("cut at %d: version %d, keys %d, end %d; want the whole save's", cut, h.corpusVersion, h.keys, end)
			}
		}
		if !holds(g, 'a') {
			t.Fatalf("cut at %d: the whole save's keys lost", cut)
		}
	}
	// An append after a torn record (its change never committed) cuts it
	// off.
	g, _, end := load(second - 5)
	for i := range 300 {
		g.addLive(key('d', i))
	}
	size, err := appendFilterLog(dir, id, end, g, 3, 1600)
	if err != nil {
		t.Fatal(err)
	}
	g, h, _, err := loadFilter(dir)
	if err != nil {
		t.Fatal(err)
	}
	if h, got, err := replayFilterLog(dir, g, id, h); err != nil || got != size || h.corpusVersion != 3 || !holds(g, 'b') || !holds(g, 'd') {
		t.Fatalf("after an append over a torn record: end %d (want %d), version %d, %v", got, size, h.corpusVersion, err)
	}
}
