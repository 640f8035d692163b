package synth

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/dump"
)

// PwnedOptions shape a synthetic Pwned Passwords corpus.
type PwnedOptions struct {
	Seed   uint64
	Hashes int // distinct hashes to write
	Kind   breachd.HashKind
	// EveryPrefix spreads each 2.5-byte prefix's hashes over its sixteen
	// 3-byte prefixes in turn, so that with 16 Mi hashes or more every
	// 3-byte prefix holds one, as pwnedpass's pwngen requires of its input.
	EveryPrefix bool
}

// KnownPasswords are planted in every synthetic password corpus with the
// counts given, so that tests and clients can look up a real password.
var KnownPasswords = []struct {
	Password string
	Count    uint64
}{
	{"password", 9_545_824}, {"123456", 42_080_000}, {"P@ssw0rd", 150_000}, {"hunter2", 17_043}, {"correct horse battery staple", 394},
}

// KnownHash returns the hash of a known password in kind k.
func KnownHash(k breachd.HashKind, password string) [breachd.MaxPasswordHashSize]byte {
	var h [breachd.MaxPasswordHashSize]byte
	switch k {
	case breachd.SHA1:
		s := sha1.Sum([]byte(password))
		copy(h[:], s[:])
	case breachd.NTLM:
		h = dump.NTLM([]byte(password))
	}
	return h
}

// WritePwned writes a Pwned-Passwords-shaped corpus: HASH:COUNT lines,
// upper-case, sorted by hash, CRLF-ended as the downloader writes them.
// Hashes are random, spread evenly over the 2^20 range prefixes, plus the
// KnownPasswords; counts follow a Pareto law (half are 1, one in a thousand
// is over 1000), as prevalence does. It streams: memory does not grow with
// the corpus. The same options always give the same file.
func WritePwned(w io.Writer, o PwnedOptions) error {
	size := o.Kind.Size()
	if size == 0 {
		return fmt.Errorf("unknown hash kind %d", o.Kind)
	}
	r := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
	known := map[uint32][]knownHash{}
	for _, kp := range KnownPasswords {
		h := KnownHash(o.Kind, kp.Password)
		p := uint32(h[0])<<12 | uint32(h[1])<<4 | uint32(h[2])>>4
		known[p] = append(known[p], knownHash{h, kp.Count})
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	const prefixes = 1 << 20
	type entry struct {
		h [breachd.MaxPasswordHashSize]byte
		n uint64
	}
	var batch []entry
	line := make([]byte, 0, 64)
	for p := range uint64(prefixes) {
		n := int((p+1)*uint64(o.Hashes)/prefixes - p*uint64(o.Hashes)/prefixes)
		batch = batch[:0]
		for i := range n {
			var e entry
			for i := 0; i < size; i += 8 {
				var b [8]byte
				v := r.Uint64()
				for j := range b {
					b[j] = byte(v >> (8 * j))
				}
				copy(e.h[i:size], b[:])
			}
			e.h[0], e.h[1], e.h[2] = byte(p>>12), byte(p>>4), byte(p<<4)|e.h[2]&15
			if o.EveryPrefix {
				e.h[2] = byte(p<<4) | byte(i%16)
			}
			e.n = pareto(r)
			batch = append(batch, e)
		}
		for _, k := range known[uint32(p)] {
			batch = append(batch, entry(k))
		}
		slices.SortFunc(batch, func(a, b entry) int { return bytes.Compare(a.h[:size], b.h[:size]) })
		for i := range batch {
			if i > 0 && batch[i].h == batch[i-1].h {
				continue
			}
			line = line[:0]
			for _, c := range batch[i].h[:size] {
				line = append(line, "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
			}
			line = append(line, ':')
			line = fmt.Appendf(line, "%d\r\n", batch[i].n)
			if _, err := bw.Write(line); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

type knownHash struct {
	h [breachd.MaxPasswordHashSize]byte
	n uint64
}

// pareto draws a prevalence count: P(count >= c) = 1/c, capped.
func pareto(r *rand.Rand) uint64 {
	u := 1 - r.Float64() // (0, 1]
	return uint64(min(math.Floor(1/u), 50_000_000))
}
