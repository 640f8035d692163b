package httpapi

import (
	"cmp"
	"context"
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
// key is the suffix's first 60 bits (the hash's bytes 2-9 less the
// prefix's last nibble), by which lines sort, as padLines' keys.
type rangeEntry struct {
	key  uint64
	hash [breachd.MaxPasswordHashSize]byte
	n    uint64
}

type rangeScratch struct {
	real []rangeEntry
	out  []byte // the answer (net/http; fasthttp's is its body buffer)
}

var scratchPool = sync.Pool{New: func() any { return new(rangeScratch) }}

// The padding each kind keeps ready: padSets sets of padSetLen made-up
// lines, the most an answer is padded with. An answer takes one set at
// random, and from it a window of as many lines as it needs, starting at a
// random line and wrapping round the set's end: at most two runs of the
// set's text, each copied in one move, whatever the answer's size. (Leaving
// out lines at random instead, a run between each two, made a 35 KB
// answer's padding cost 6 µs of its daemon's 20; bench/README.md.) What
// padding hides is the answer's size, drawn afresh each time with the
// runtime's cryptographic generator; the lines carry count 0, which gives
// them away to whoever reads the answer, so that they recur across answers,
// and which of a set's lines an answer leaves out, tell nothing more. A
// set's lines spread over the whole suffix space, as random suffixes do;
// the window of a prefix with few real lines (800 or more of the 1,000)
// spans at least four fifths of it.
const (
	padSets   = 8
	padSetLen = padMin + padJitter
)

// padLines is a kind's padding: its sets, each padSetLen lines
// "SUFFIX:0\r\n" of random suffixes, sorted, width bytes each and back to
// back, and each line's key (the suffix's first 60 bits, as rangeEntry.key
// without the prefix's nibble) for merging with real lines.
type padLines struct {
	width int
	sets  [padSets]padSet
}

type padSet struct {
	text []byte
	keys []uint64
}

var pools sync.Map // breachd.HashKind -> *padLines

func poolFor(k breachd.HashKind) *padLines {
	if p, ok := pools.Load(k); ok {
		return p.(*padLines)
	}
	size := k.Size()
	p := &padLines{width: 2*size - breachd.PrefixHexLen + 2 + 2}
	type line struct {
		key  uint64
		hash [breachd.MaxPasswordHashSize]byte
	}
	lines := make([]line, padSetLen)
	var hexBuf [2 * breachd.MaxPasswordHashSize]byte
	for s := range p.sets {
		for i := range lines {
			for j := 0; j < size; j += 8 {
				var b [8]byte
				binary.LittleEndian.PutUint64(b[:], rand.Uint64())
				copy(lines[i].hash[j:size], b[:])
			}
			lines[i].key = binary.BigEndian.Uint64(lines[i].hash[2:]) & (1<<60 - 1)
		}
		slices.SortFunc(lines, func(a, b line) int { return cmp.Compare(a.key, b.key) })
		set := padSet{text: make([]byte, 0, padSetLen*p.width), keys: make([]uint64, padSetLen)}
		for i, l := range lines {
			hexUpper(hexBuf[:], l.hash[2:size])
			set.text = append(set.text, hexBuf[1:2*(size-2)]...)
			set.text = append(set.text, ':', '0', '\r', '\n')
			set.keys[i] = l.key
		}
		p.sets[s] = set
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
	out, version, code, msg := a.rangeAnswer(r.Context(), sc, sc.out[:0], r.PathValue("prefix"), r.URL.RawQuery,
		strings.EqualFold(r.Header.Get("Add-Padding"), "true"))
	sc.out = out // kept with the scratch for the next answer
	if code != http.StatusOK {
		return writeText(w, code, msg)
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(out)))
	h.Set(headerCorpusVersion, strconv.FormatUint(version, 10))
	w.WriteHeader(http.StatusOK)
	w.Write(out)
	return http.StatusOK
}

// rangeAnswer appends the answer for prefix (the path's 5 hex characters)
// and the request's raw query (its mode: "" for SHA-1) to out, padded if
// asked, and returns it, the corpus version and 200; or the status and the
// message to refuse with. Both servers answer through it (rangeHandler,
// fastRange), and it reads the query itself (query), so that they read it
// alike.
func (a *API) rangeAnswer(ctx context.Context, sc *rangeScratch, out []byte, prefixText, rawQuery string, padded bool) (answer []byte, version uint64, code int, msg string) {
	const route = "range"
	prefix, err := breachd.ParseRangePrefix(prefixText)
	if err != nil {
		return out, 0, http.StatusBadRequest, "The hash prefix was not in a valid format"
	}
	q, err := query(rawQuery)
	if err != nil {
		code, msg := statusFor(a.log, route, err)
		return out, 0, code, msg
	}
	mode := q.Get("mode")
	kind := breachd.SHA1
	switch strings.ToLower(mode) {
	case "", "sha1":
	case "ntlm":
		kind = breachd.NTLM
	default:
		return out, 0, http.StatusBadRequest, "The mode " + strconv.Quote(mode) + " is not supported: use sha1 (the default) or ntlm"
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
		return out, 0, code, msg
	}
	if !padded {
		return writeRange(out, kind, sc.real, nil, 0, 0), version, http.StatusOK, ""
	}
	set := &poolFor(kind).sets[rand.IntN(padSets)]
	keep := max(0, padMin-len(sc.real)) + rand.IntN(padJitter+1)
	return writeRange(out, kind, sc.real, set, rand.IntN(padSetLen), keep), version, http.StatusOK, ""
}

// writeRange appends the lines of real (sorted by key) and, with a set,
// keep (at most padSetLen) of the set's lines from its line start on,
// wrapping round its end, merged in order and separated by CRLF: each line
// the hash from its 6th hex digit on, upper-case, ':' and the count. Each
// line is written with a CRLF after it and the last one is cut off.
func writeRange(out []byte, kind breachd.HashKind, real []rangeEntry, set *padSet, start, keep int) []byte {
	size, first := kind.Size(), len(out)
	out = slices.Grow(out, len(real)*(2*size+10))
	var line [2 * breachd.MaxPasswordHashSize]byte
	i := 0 // the next line of real
	writeReal := func() {
		// The hex of bytes 2 on, less its first digit (the prefix's last).
		hexUpper(line[:], real[i].hash[2:size])
		out = append(out, line[1:2*(size-2)]...)
		out = append(out, ':')
		out = strconv.AppendUint(out, real[i].n, 10)
		out = append(out, '\r', '\n')
		i++
	}
	// pad writes the set's lines [lo, hi) and the real lines that go
	// before line hi: one move a run between two real lines.
	pad := func(lo, hi int) {
		width := len(set.text) / padSetLen
		for lo < hi {
			j := hi
			if i < len(real) {
				k, _ := slices.BinarySearch(set.keys[lo:hi], real[i].key)
				j = lo + k
			}
			out = append(out, set.text[lo*width:j*width]...)
			if lo = j; j < hi {
				writeReal()
			}
		}
	}
	if set != nil {
		out = slices.Grow(out, keep*len(set.text)/padSetLen)
		if wrap := start + keep - padSetLen; wrap > 0 { // the window's two runs, in order
			pad(0, wrap)
			pad(start, padSetLen)
		} else {
			pad(start, start+keep)
		}
	}
	for i < len(real) {
		writeReal()
	}
	if len(out) > first {
		out = out[:len(out)-2] // the last line's CRLF
	}
	return out
}

func writeText(w http.ResponseWriter, code int, msg string) int {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	w.Write([]byte(msg))
	return code
}
