package httpapi

import (
	"cmp"
	"context"
	"encoding/binary"
	mathbits "math/bits"
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
// key is the suffix's first 60 bits (the hash's bytes 2-9 less the
// prefix's last nibble), by which lines sort, as padLines' keys.
type rangeEntry struct {
	key  uint64
	hash [breachd.MaxPasswordHashSize]byte
	n    uint64
}

type rangeScratch struct {
	real []rangeEntry
	pick [padPool / 64]uint64 // the pool lines drawn for this answer, a bit each
	out  []byte
}

var scratchPool = sync.Pool{New: func() any {
	return &rangeScratch{out: make([]byte, 0, 48<<10)}
}}

// padPool is how many made-up lines each kind keeps ready. An answer draws
// its padding from them (distinct lines, in order), so that padding costs
// a copy a line rather than random hex made on the spot. What padding
// hides is the answer's size, drawn afresh each time with the runtime's
// cryptographic generator; the lines carry count 0 and are thrown away,
// so that they recur across answers tells nothing.
const padPool = 1 << 12

// padLines is a kind's pool: lines "SUFFIX:0" of random suffixes, sorted,
// each width bytes, and each line's key (the suffix's first 60 bits, as
// rangeEntry.key without the prefix's nibble) for merging with real lines.
type padLines struct {
	width int
	text  []byte
	keys  []uint64
}

var pools sync.Map // breachd.HashKind -> *padLines

func poolFor(k breachd.HashKind) *padLines {
	if p, ok := pools.Load(k); ok {
		return p.(*padLines)
	}
	size := k.Size()
	type line struct {
		key  uint64
		hash [breachd.MaxPasswordHashSize]byte
	}
	lines := make([]line, padPool)
	for i := range lines {
		for j := 0; j < size; j += 8 {
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], rand.Uint64())
			copy(lines[i].hash[j:size], b[:])
		}
		lines[i].key = binary.BigEndian.Uint64(lines[i].hash[2:]) & (1<<60 - 1)
	}
	slices.SortFunc(lines, func(a, b line) int { return cmp.Compare(a.key, b.key) })
	width := 2*size - breachd.PrefixHexLen + 2
	p := &padLines{width: width, text: make([]byte, 0, padPool*width), keys: make([]uint64, padPool)}
	var hexBuf [2 * breachd.MaxPasswordHashSize]byte
	for i, l := range lines {
		hexUpper(hexBuf[:], l.hash[2:size])
		p.text = append(p.text, hexBuf[1:2*(size-2)]...)
		p.text = append(p.text, ':', '0')
		p.keys[i] = l.key
	}
	got, _ := pools.LoadOrStore(k, p)
	return got.(*padLines)
}

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
	sc := scratchPool.Get().(*rangeScratch)
	defer scratchPool.Put(sc)
	version, code, msg := a.rangeAnswer(r.Context(), sc, r.PathValue("prefix"), r.URL.Query().Get("mode"),
		strings.EqualFold(r.Header.Get("Add-Padding"), "true"))
	if code != http.StatusOK {
		return writeText(w, code, msg)
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(sc.out)))
	h.Set(headerCorpusVersion, strconv.FormatUint(version, 10))
	w.WriteHeader(http.StatusOK)
	w.Write(sc.out)
	return http.StatusOK
}

// rangeAnswer writes the answer for prefix (the path's 5 hex characters)
// and mode (the query's, "" for SHA-1) to sc.out, padded if asked, and
// returns the corpus version and 200; or the status and the message to
// refuse with. Both servers answer through it (rangeHandler, fastRange).
func (a *API) rangeAnswer(ctx context.Context, sc *rangeScratch, prefixText, mode string, padded bool) (version uint64, code int, msg string) {
	const route = "range"
	prefix, err := breachd.ParseRangePrefix(prefixText)
	if err != nil {
		return 0, http.StatusBadRequest, "The hash prefix was not in a valid format"
	}
	kind := breachd.SHA1
	switch strings.ToLower(mode) {
	case "", "sha1":
	case "ntlm":
		kind = breachd.NTLM
	default:
		return 0, http.StatusBadRequest, "The mode " + strconv.Quote(mode) + " is not supported: use sha1 (the default) or ntlm"
	}
	sc.real = sc.real[:0]
	version, err = a.svc.PasswordRange(ctx, kind, prefix, func(h []byte, n uint64) {
		e := rangeEntry{n: n}
		copy(e.hash[:], h)
		e.key = binary.BigEndian.Uint64(e.hash[2:]) & (1<<60 - 1)
		sc.real = append(sc.real, e)
	})
	if err != nil {
		code, msg := statusFor(a.log, route, err)
		return 0, code, msg
	}
	var pool *padLines
	if padded {
		pool = poolFor(kind)
		drawPadding(&sc.pick, max(0, padMin-len(sc.real))+rand.IntN(padJitter+1))
	}
	sc.out = writeRange(sc.out[:0], kind, sc.real, pool, &sc.pick)
	return version, http.StatusOK, ""
}

// drawPadding marks n distinct lines of the pool, at random.
func drawPadding(pick *[padPool / 64]uint64, n int) {
	for n > 0 {
		i := rand.Uint32() % padPool
		if w, b := i/64, uint64(1)<<(i%64); pick[w]&b == 0 {
			pick[w] |= b
			n--
		}
	}
}

// writeRange appends the lines of real (sorted by key) and, with a pool,
// of the pool lines marked in pick (which it clears), merged in order and
// separated by CRLF: each line the hash from its 6th hex digit on,
// upper-case, ':' and the count.
func writeRange(out []byte, kind breachd.HashKind, real []rangeEntry, pool *padLines, pick *[padPool / 64]uint64) []byte {
	size := kind.Size()
	out = slices.Grow(out, len(real)*(2*size+8))
	if pool != nil {
		out = slices.Grow(out, (padMin+padJitter)*(pool.width+2))
	}
	var line [2 * breachd.MaxPasswordHashSize]byte
	i, w := 0, 0 // the next real line, and the next word of pick
	var bits uint64
	for {
		next := -1 // the next pool line, if any
		if pool != nil {
			for bits == 0 && w < len(pick) {
				bits, pick[w] = pick[w], 0
				w++
			}
			if bits != 0 {
				next = (w-1)*64 + mathbits.TrailingZeros64(bits)
			}
		}
		if next < 0 && i == len(real) {
			return out
		}
		if len(out) > 0 {
			out = append(out, '\r', '\n')
		}
		if next < 0 || (i < len(real) && real[i].key <= pool.keys[next]) {
			e := &real[i]
			i++
			// The hex of bytes 2 on, less its first digit (the prefix's last).
			hexUpper(line[:], e.hash[2:size])
			out = append(out, line[1:2*(size-2)]...)
			out = append(out, ':')
			out = strconv.AppendUint(out, e.n, 10)
			continue
		}
		bits &= bits - 1
		out = append(out, pool.text[next*pool.width:(next+1)*pool.width]...)
	}
}

func writeText(w http.ResponseWriter, code int, msg string) int {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	w.Write([]byte(msg))
	return code
}
