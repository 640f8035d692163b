package store

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestCountedLayouts writes counted indexes of the directory sizes a
// record's shape depends on (1<<16 buckets: records leave out 2 key bytes;
// 1<<24: 3), and one rewritten in the first layout (4-byte counts), and
// checks each against the keys it was given: every key's count (from the
// overflow for those over 3 bytes; the first layout's over 32 bits: "read
// Badger"), no absent key, and every range, in order, with its keys
// rebuilt whole.
func TestCountedLayouts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		k        *kind
		expected uint64 // sizes the directory
		first    bool   // rewritten in the first layout
		skip     uint64
		bits     uint
	}{
		{"sha1/1<<16", sha1Kind, 0, false, 2, 16},
		{"ntlm/1<<16", ntlmKind, 0, false, 2, 16},
		{"sha1/1<<24", sha1Kind, 1 << 26, false, 3, 24},
		{"ntlm/1<<24", ntlmKind, 1 << 26, false, 3, 24},
		{"sha1/first-layout", sha1Kind, 0, true, 2, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(tc.k.keySize), tc.expected))
			key := func(prefix []byte) []byte {
				b := make([]byte, tc.k.keySize)
				for i := range b {
					b[i] = byte(r.Uint32())
				}
				copy(b, prefix)
				return b
			}
			counts := map[string]uint64{}
			for range 20_000 {
				counts[string(key(nil))] = 1 + r.Uint64N(1000)
			}
			// Ranges of many keys, spread over the 16 buckets of a
			// 20-bit prefix at 1<<24 buckets.
			for range 20 {
				p := key(nil)[:3]
				for range 40 {
					counts[string(key(p[:2]))] = 1 + r.Uint64N(1000)
				}
			}
			keys := make([][]byte, 0, len(counts))
			for k := range counts {
				keys = append(keys, []byte(k))
			}
			slices.SortFunc(keys, bytes.Compare)
			// Counts around 3 bytes: the largest a record holds, and two it
			// escapes; one of them over 32 bits.
			counts[string(keys[100])] = 1<<24 - 2
			counts[string(keys[200])] = 1<<24 - 1
			counts[string(keys[300])] = 1<<32 + 5

			w, err := newIndexWriter(t.TempDir(), tc.k, tc.expected, []uint32{7})
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if err := w.addCount(k, counts[string(k)]); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.finish(3); err != nil {
				t.Fatal(err)
			}
			x, err := w.install()
			if err != nil {
				t.Fatal(err)
			}
			defer unmapFile(x.mapped)
			if tc.first {
				if x, err = parseIndex(firstLayout(t, x, tc.k), tc.k); err != nil {
					t.Fatal(err)
				}
			}
			if x.skip != tc.skip || x.bits != tc.bits || x.n != uint64(len(keys)) {
				t.Fatalf("index of skip %d, %d bits, %d keys; want %d, %d, %d", x.skip, x.bits, x.n, tc.skip, tc.bits, len(keys))
			}
			// Every count is exact, but the first layout's over 32 bits:
			// those it sends to Badger.
			want := func(k []byte) uint64 {
				if n := counts[string(k)]; !tc.first || n < countEscape {
					return n
				}
				return countUnknown
			}
			for _, k := range keys {
				if n, ok := x.findCount(k); !ok || n != want(k) {
					t.Fatalf("findCount(%x) = %d, %v; want %d", k, n, ok, want(k))
				}
			}
			for range 2000 {
				if k := key(nil); counts[string(k)] == 0 {
					if n, ok := x.findCount(k); ok {
						t.Fatalf("findCount(%x) of an absent key = %d", k, n)
					}
				}
			}
			byPrefix := map[uint32][][]byte{}
			prefix := func(k []byte) uint32 { return uint32(k[0])<<12 | uint32(k[1])<<4 | uint32(k[2])>>4 }
			for _, k := range keys {
				byPrefix[prefix(k)] = append(byPrefix[prefix(k)], k)
			}
			for range 500 { // and empty ones
				if p := r.Uint32N(1 << 20); byPrefix[p] == nil {
					byPrefix[p] = [][]byte{}
				}
			}
			buf := make([]byte, tc.k.keySize)
			for p, ks := range byPrefix {
				var got [][]byte
				done := x.eachInRange(p, buf, func(k []byte, n uint64) {
					if n != want(k) {
						t.Errorf("range %05x: %x counted %d, want %d", p, k, n, want(k))
					}
					got = append(got, bytes.Clone(k))
				})
				escaped := slices.ContainsFunc(ks, func(k []byte) bool { return want(k) == countUnknown })
				switch {
				case escaped && (done || len(got) > 0):
					t.Errorf("range %05x holds an escaped count: done %v after %d keys, want false after none", p, done, len(got))
				case !escaped && (!done || !slices.EqualFunc(got, ks, bytes.Equal)):
					t.Errorf("range %05x: done %v, %d keys; want %d keys in order", p, done, len(got), len(ks))
				}
			}
		})
	}
}

// firstLayout rewrites counted index x in the first layout: magic
// indexMagicCounted1, records of 4-byte counts (all ones: an escape to
// Badger), no overflow.
func firstLayout(t *testing.T, x *index, k *kind) []byte {
	t.Helper()
	if x.skip != 2 || x.cw != 3 {
		t.Fatalf("rewriting an index of skip %d and %d-byte counts", x.skip, x.cw)
	}
	le := binary.LittleEndian
	m := make([]byte, indexHdrSize, len(x.mapped)+int(x.n))
	copy(m, indexMagicCounted1)
	copy(m[8:indexHdrSize], x.mapped[8:indexHdrSize])
	for i := range x.n {
		r := x.recs[i*x.rsz : (i+1)*x.rsz]
		m = append(m, r[:x.klen]...)
		m = le.AppendUint32(m, uint32(min(x.count(i, r), countEscape)))
	}
	for len(m)%4 != 0 {
		m = append(m, 0)
	}
	m = append(m, x.dir...)
	le.PutUint64(m[40:], uint64(len(m)))
	sets := x.mapped[le.Uint64(x.mapped[40:]):]
	return append(m, sets[:4+4*le.Uint32(sets)]...)
}
