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

// rangeEntry is one line of a range answer: the hash (real or made up)
// and its count. key is the hash's bits 16-79, by which lines sort.
type rangeEntry struct {
	key  uint64
	hash [breachd.MaxPasswordHashSize]byte
	n    uint64
}

type rangeScratch struct {
	real, pad []rangeEntry
	out       []byte
}

var scratchPool = sync.Pool{New: func() any {
	return &rangeScratch{pad: make([]rangeEntry, 0, padMin+padJitter), out: make([]byte, 0, 48<<10)}
}}

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
		sc.pad = padding(sc.pad, prefix, max(0, padMin-len(sc.real))+rand.IntN(padJitter+1))
	}
	sc.out = writeRange(sc.out[:0], kind, sc.real, sc.pad)
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(sc.out)))
	h.Set(headerCorpusVersion, strconv.FormatUint(version, 10))
	w.WriteHeader(http.StatusOK)
	w.Write(sc.out)
	return http.StatusOK
}

// padding appends n made-up entries under prefix, sorted by key. Only the
// key decides the order, so only the keys are sorted; the rest of each
// hash is drawn after.
func padding(dst []rangeEntry, prefix breachd.RangePrefix, n int) []rangeEntry {
	nib := uint64(prefix & 15)
	start := len(dst)
	for range n {
		dst = append(dst, rangeEntry{key: rand.Uint64()&^(15<<60) | nib<<60})
	}
	pad := dst[start:]
	slices.SortFunc(pad, func(x, y rangeEntry) int {
		switch {
		case x.key < y.key:
			return -1
		case x.key > y.key:
			return 1
		}
		return 0
	})
	for i := range pad {
		e := &pad[i]
		e.hash[0], e.hash[1] = byte(prefix>>12), byte(prefix>>4)
		binary.BigEndian.PutUint64(e.hash[2:], e.key)
		binary.BigEndian.PutUint64(e.hash[10:], rand.Uint64())
		binary.BigEndian.PutUint16(e.hash[18:], uint16(rand.Uint32()))
	}
	return dst
}

// writeRange appends the lines of real and pad (each sorted by key),
// merged in order, separated by CRLF.
func writeRange(out []byte, kind breachd.HashKind, real, pad []rangeEntry) []byte {
	nibbles := 2 * kind.Size()
	i, j := 0, 0
	for i < len(real) || j < len(pad) {
		var e *rangeEntry
		if j == len(pad) || (i < len(real) && real[i].key <= pad[j].key) {
			e, i = &real[i], i+1
		} else {
			e, j = &pad[j], j+1
		}
		if len(out) > 0 {
			out = append(out, '\r', '\n')
		}
		for k := breachd.PrefixHexLen; k < nibbles; k++ {
			b := e.hash[k/2]
			if k%2 == 0 {
				b >>= 4
			}
			out = append(out, "0123456789ABCDEF"[b&15])
		}
		out = append(out, ':')
		out = strconv.AppendUint(out, e.n, 10)
	}
	return out
}

func writeText(w http.ResponseWriter, code int, msg string) int {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	w.Write([]byte(msg))
	return code
}
