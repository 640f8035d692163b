package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// sortedByComparison is the oracle for sortRecords: the records split,
// sorted stably by key with the standard library, and joined.
func sortedByComparison(b []byte, size, key int) []byte {
	recs := make([][]byte, 0, len(b)/size)
	for i := 0; i < len(b); i += size {
		recs = append(recs, b[i:i+size])
	}
	slices.SortStableFunc(recs, func(x, y []byte) int { return bytes.Compare(x[:key], y[:key]) })
	return bytes.Join(recs, nil)
}

// records makes n records of size bytes, keys of key bytes drawn by fill,
// and each record's tail (a count) its index, so that a record torn apart
// or two swapped halves show.
func records(n, size, key int, fill func(i int, k []byte)) []byte {
	b := make([]byte, n*size)
	for i := range n {
		r := b[i*size : (i+1)*size]
		fill(i, r[:key])
		for j := key; j < size; j++ {
			r[j] = byte(i >> (8 * ((j - key) % 4)))
		}
	}
	return b
}

// TestSortRecords checks sortRecords against a comparison sort on keys
// that spread (hashes), that repeat, that share long prefixes (a crafted
// dump), that are all equal, and on sizes about the insertion sort's bound:
// the same keys in the same order, and each record whole.
func TestSortRecords(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(_ int, k []byte) {
		for j := range k {
			k[j] = byte(rng.Uint32())
		}
	}
	for _, tc := range []struct {
		name      string
		n         int
		size, key int
		fill      func(i int, k []byte)
	}{
		{"empty", 0, 32, 32, random},
		{"one", 1, 32, 32, random},
		{"two", 2, 32, 32, random},
		{"insertion bound", insertionMax, 32, 32, random},
		{"insertion bound+1", insertionMax + 1, 32, 32, random},
		{"hashes", 100_000, 32, 32, random},
		{"hashes counted", 100_000, 40, 32, random},
		{"sha1 counted", 50_000, 28, 20, random},
		{"repeats", 50_000, 32, 32, func(_ int, k []byte) {
			clear(k)
			binary.BigEndian.PutUint16(k[30:], uint16(rng.IntN(300)))
		}},
		{"shared prefix", 20_000, 40, 32, func(_ int, k []byte) {
			for j := range k {
				k[j] = 0xAB
			}
			binary.BigEndian.PutUint32(k[28:], rng.Uint32())
		}},
		{"all equal", 5_000, 40, 32, func(_ int, k []byte) {
			for j := range k {
				k[j] = 7
			}
		}},
		{"descending", 10_000, 32, 32, func(i int, k []byte) {
			clear(k)
			binary.BigEndian.PutUint64(k, ^uint64(i))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := records(tc.n, tc.size, tc.key, tc.fill)
			want := sortedByComparison(b, tc.size, tc.key)
			sortRecords(b, tc.size, tc.key)
			for i := 0; i < len(b); i += tc.size {
				if !bytes.Equal(b[i:i+tc.key], want[i:i+tc.key]) {
					t.Fatalf("record %d: key %x, want %x", i/tc.size, b[i:i+tc.key], want[i:i+tc.key])
				}
			}
			// Whole records: the same multiset as the input's.
			got := sortedByComparison(b, tc.size, tc.size)
			if !bytes.Equal(got, sortedByComparison(want, tc.size, tc.size)) {
				t.Fatal("the records sorted are not the records given")
			}
		})
	}
}

// BenchmarkSortRecords sorts 4M hash-keyed records (a bulk load's chunk,
// Options.BulkChunkDigests), uncounted and counted, by sortRecords and by
// the comparison sort it replaced (interfaceSorter), in one
// run: their ratio is the speed-up.
func BenchmarkSortRecords(b *testing.B) {
	const n = 4 << 20
	for _, size := range []int{32, 40} {
		rng := rand.New(rand.NewPCG(3, 4))
		in := records(n, size, 32, func(_ int, k []byte) {
			for j := 0; j < len(k); j += 8 {
				binary.LittleEndian.PutUint64(k[j:], rng.Uint64())
			}
		})
		buf := make([]byte, len(in))
		tmp := make([]byte, size)
		for _, sorter := range []struct {
			name string
			sort func()
		}{
			{"radix", func() { sortRecords(buf, size, 32) }},
			{"comparison", func() { sort.Sort(interfaceSorter{b: buf, size: size, key: 32, tmp: tmp}) }},
		} {
			b.Run(fmt.Sprintf("size=%d/%s", size, sorter.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(in)))
				for b.Loop() {
					b.StopTimer()
					copy(buf, in)
					b.StartTimer()
					sorter.sort()
				}
			})
		}
	}
}

// interfaceSorter is the sort sortRecords replaced, kept as the
// benchmark's baseline: sort.Sort over the records, the first 8 bytes
// compared as one integer.
type interfaceSorter struct {
	b         []byte
	size, key int
	tmp       []byte
}

func (s interfaceSorter) Len() int { return len(s.b) / s.size }
func (s interfaceSorter) Less(i, j int) bool {
	a, b := s.b[i*s.size:i*s.size+s.key], s.b[j*s.size:j*s.size+s.key]
	if x, y := binary.BigEndian.Uint64(a), binary.BigEndian.Uint64(b); x != y {
		return x < y
	}
	return bytes.Compare(a[8:], b[8:]) < 0
}
func (s interfaceSorter) Swap(i, j int) {
	a, b := s.b[i*s.size:(i+1)*s.size], s.b[j*s.size:(j+1)*s.size]
	copy(s.tmp, a)
	copy(a, b)
	copy(b, s.tmp)
}
