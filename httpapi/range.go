package httpapi

import (
	"encoding/binary"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/breachd/breachd"
)

// Padding, as Pwned Passwords' Add-Padding: an answer is padded with
// random suffixes of count 0 to at least padMin lines, plus 0 to padJitter
// more, so that its size says nothing about the prefix.
const (
	padMin    = 800
	padJitter = 200
)

// rangeEntry is one real line of a range answer: the hash and its count.
// key is the hash's bytes 2-9, by which lines sort (byte 2's high nibble
// is the prefix's last, the same for every line).
type rangeEntry struct {
	key  uint64
	hash [breachd.MaxPasswordHashSize]byte
	n    uint64
}

type rangeScratch struct {
	rng  *rand.PCG
	r    *rand.Rand
	real []rangeEntry
	pad  []uint64 // padding lines' keys, sorted; the rest of each is drawn as it is written
	keys []uint64 // the keys before sorting
	out  []byte
}

var scratchPool = sync.Pool{New: func() any {
	pcg := rand.NewPCG(rand.Uint64(), rand.Uint64())
	return &rangeScratch{rng: pcg, r: rand.New(pcg), pad: make([]uint64, 0, padMin+padJitter), out: make([]byte, 0, 48<<10)}
}}

// hexPair is every byte's two upper-case hex digits.
var hexPair = func() (t [256][2]byte) {
	const digits = "0123456789ABCDEF"
	for i := range t {
		t[i] = [2]byte{digits[i>>4], digits[i&15]}
	}
	return t
}()

// hexUpper writes the upper-case hex of b to dst, four bytes at a time
// (SWAR: each nibble spread to a byte, then made a digit or letter).
func hexUpper(dst, b []byte) {
	_ = dst[2*len(b)-1]
	i := 0
	for ; i+4 <= len(b); i += 4 {
		x := uint64(binary.BigEndian.Uint32(b[i:]))
		x = (x<<16 | x) & 0x0000FFFF0000FFFF
		x = (x<<8 | x) & 0x00FF00FF00FF00FF
		x = (x<<4 | x) & 0x0F0F0F0F0F0F0F0F
		letters := ((x + 0x0606060606060606) >> 4) & 0x0101010101010101 // 1 where the nibble is over 9
		binary.BigEndian.PutUint64(dst[2*i:], x+0x3030303030303030+letters*7)
	}
	for ; i < len(b); i++ {
		dst[2*i], dst[2*i+1] = hexPair[b[i]][0], hexPair[b[i]][1]
	}
}

// headerCorpusVersion reports the version an answer was computed at: a
// breachd addition that upstream clients ignore.
const headerCorpusVersion = "X-Corpus-Version"

// rangeHandler answers GET /range/{prefix}: every suffix of the kind's
// corpus that follows the 5 hex characters, upper-case, SUFFIX:COUNT
// lines separated by CRLF, as text/plain. mode=ntlm asks the NTLM corpus.
func (a *API) rangeHandler(w http.ResponseWriter, r *http.Request) int {
	const route = "range"
	prefix, err := breachd.ParseRangePrefix(r.PathValue("prefix"))
	if err != nil {
		return writeText(w, http.StatusBadRequest, "The hash prefix was not in a valid format")
	}
	kind := breachd.SHA1
	switch mode := r.URL.Query().Get("mode"); strings.ToLower(mode) {
	case "", "sha1":
	case "ntlm":
		kind = breachd.NTLM
	default:
		return writeText(w, http.StatusBadRequest, "The mode "+strconv.Quote(mode)+" is not supported: use sha1 (the default) or ntlm")
	}
	sc := scratchPool.Get().(*rangeScratch)
	defer scratchPool.Put(sc)
	sc.real = sc.real[:0]
	version, err := a.svc.PasswordRange(r.Context(), kind, prefix, func(h []byte, n uint64) {
		e := rangeEntry{n: n}
		copy(e.hash[:], h)
		e.key = binary.BigEndian.Uint64(e.hash[2:])
		sc.real = append(sc.real, e)
	})
	if err != nil {
		code, msg := statusFor(a.log, route, err)
		return writeText(w, code, msg)
	}
	sc.pad = sc.pad[:0]
	if strings.EqualFold(r.Header.Get("Add-Padding"), "true") {
		sc.rng.Seed(rand.Uint64(), rand.Uint64())
		sc.pad, sc.keys = padding(sc.pad, sc.keys, sc.r, prefix, max(0, padMin-len(sc.real))+rand.IntN(padJitter+1))
	}
	sc.out = writeRange(sc.out[:0], sc.r, kind, sc.real, sc.pad)
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(sc.out)))
	h.Set(headerCorpusVersion, strconv.FormatUint(version, 10))
	w.WriteHeader(http.StatusOK)
	w.Write(sc.out)
	return http.StatusOK
}

// padding appends the keys of n made-up lines under prefix, sorted. Only
// the key decides the order, so only keys are drawn and sorted here (a
// counting sort on their top bits, then insertion within each bucket,
// about one key a bucket); the rest of each made-up hash is drawn as it is
// written. The draws come from a PCG seeded from the runtime's
// cryptographic generator: what they hide is the answer's size, which
// rand.IntN drew; the padding lines themselves are thrown away.
func padding(dst, keys []uint64, r *rand.Rand, prefix breachd.RangePrefix, n int) ([]uint64, []uint64) {
	const bucketBits = 10
	nib := uint64(prefix & 15)
	var counts [1<<bucketBits + 1]uint16
	keys = slices.Grow(keys[:0], n)[:n]
	for i := range keys {
		k := r.Uint64()&^(15<<60) | nib<<60
		keys[i] = k
		counts[(k>>(60-bucketBits))&(1<<bucketBits-1)+1]++
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	start := len(dst)
	dst = slices.Grow(dst, n)[:start+n]
	out := dst[start:]
	for _, k := range keys {
		b := (k >> (60 - bucketBits)) & (1<<bucketBits - 1)
		out[counts[b]] = k
		counts[b]++
	}
	for i := 1; i < len(out); i++ { // nearly sorted: insertion sort finishes it
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return dst, keys
}

// writeRange appends the lines of real (sorted by key) and of the padding
// keys pad (count 0), merged in order, separated by CRLF: each line the
// hash from its 6th hex digit on, upper-case, ':' and the count.
func writeRange(out []byte, r *rand.Rand, kind breachd.HashKind, real []rangeEntry, pad []uint64) []byte {
	size := kind.Size()
	out = slices.Grow(out, (len(real)+len(pad))*(2*size+8))
	i, j := 0, 0
	var line [2*breachd.MaxPasswordHashSize + 32]byte
	var hash [breachd.MaxPasswordHashSize]byte
	for i < len(real) || j < len(pad) {
		var n uint64
		if j == len(pad) || (i < len(real) && real[i].key <= pad[j]) {
			hash, n = real[i].hash, real[i].n
			i++
		} else {
			binary.BigEndian.PutUint64(hash[2:], pad[j])
			binary.BigEndian.PutUint64(hash[10:], r.Uint64())
			binary.BigEndian.PutUint16(hash[18:], uint16(r.Uint32()))
			j++
		}
		// line is CRLF, then the hex of bytes 2 on written from line[1],
		// so that its first digit (the prefix's last) lands where the LF
		// goes and is overwritten; the suffix starts at line[2].
		hexUpper(line[1:], hash[2:size])
		line[0], line[1] = '\r', '\n'
		end := 1 + 2*(size-2)
		line[end] = ':'
		if len(out) == 0 {
			out = append(out, line[2:end+1]...)
		} else {
			out = append(out, line[:end+1]...)
		}
		out = strconv.AppendUint(out, n, 10)
	}
	return out
}

func writeText(w http.ResponseWriter, code int, msg string) int {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	w.Write([]byte(msg))
	return code
}
