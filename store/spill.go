package store

import (
	"bufio"
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"

	"github.com/breachd/breachd"
)

// A spilling bulk load sorts its keys in bounded memory: the buffer is
// sorted, its repeats combined, and written to a run file in the corpus's
// directory each time it holds Options.BulkChunkDigests keys; the commit
// merges the sorted runs. The run files go when the import ends; a crash
// leaves them for the collection at the next open.

const spillPattern = "breachd.bulk.*.spill"

// runs are a bulk load's buffered records and spilled run files. A record
// is a key, then for a counted kind its count (8 bytes, big-endian).
type runs struct {
	dir     string
	keySize int
	counted bool
	recSize int      // keySize, plus 8 when counted
	buf     []byte   // buffered records, back to back
	files   []string // sorted runs
	spilled uint64   // distinct records in them
}

func newRuns(dir string, k *kind) runs {
	r := runs{dir: dir, keySize: k.keySize, counted: k.counted, recSize: k.keySize}
	if k.counted {
		r.recSize += 8
	}
	return r
}

// buffered is how many records the buffer holds.
func (r *runs) buffered() int { return len(r.buf) / r.recSize }

// addKeys buffers a batch's keys, back to back, with their counts (for a
// counted kind): unsorted, with their repeats; sortBuffer sorts and
// combines them.
func (r *runs) addKeys(keys []byte, counts []uint64) {
	if !r.counted {
		r.buf = append(r.buf, keys...)
		return
	}
	for i := range counts {
		r.buf = append(r.buf, keys[i*r.keySize:(i+1)*r.keySize]...)
		r.buf = binary.BigEndian.AppendUint64(r.buf, counts[i])
	}
}

// sortBuffer sorts the buffer by key and combines repeats: counts add up
// (capped), or a repeat is dropped.
func (r *runs) sortBuffer() {
	ks, counted := r.keySize, r.counted
	sortRecords(r.buf, r.recSize, ks)
	out := r.buf[:0]
	for i := 0; i < len(r.buf); i += r.recSize {
		rec := r.buf[i : i+r.recSize]
		if n := len(out); n > 0 && bytes.Equal(out[n-r.recSize:n-r.recSize+ks], rec[:ks]) {
			if counted {
				sum := min(binary.BigEndian.Uint64(out[n-8:])+binary.BigEndian.Uint64(rec[ks:]), breachd.MaxPasswordCount)
				binary.BigEndian.PutUint64(out[n-8:], sum)
			}
			continue
		}
		out = append(out, rec...)
	}
	r.buf = out
}

// sortRecords sorts b's records (size bytes each) by their first key
// bytes, in place: most significant byte first, each byte's 256 buckets
// permuted in place (American flag sort), down to runs of at most
// insertionMax records, which insertion sort finishes. Keys are hashes, so
// each byte spreads the records evenly: 4M records (a chunk) take three
// passes, 4 to 5 times faster than the comparison sort through
// sort.Interface that took a quarter of a first import's CPU
// (BenchmarkSortRecords). Keys sharing a long prefix (a crafted dump of
// digests) take a pass a shared byte, at most key of them.
func sortRecords(b []byte, size, key int) {
	sortRecordsFrom(b, size, key, 0, make([]byte, 2*size))
}

// insertionMax is the most records insertion sort orders: a pass over
// fewer costs more in its counts than it saves.
const insertionMax = 16

// sortRecordsFrom sorts records whose keys agree before byte depth;
// scratch holds two records.
func sortRecordsFrom(b []byte, size, key, depth int, scratch []byte) {
	n := len(b) / size
	if n <= insertionMax || depth == key {
		insertionSort(b, size, key, depth, scratch[:size])
		return
	}
	var count [256]int
	for i := depth; i < len(b); i += size {
		count[b[i]]++
	}
	// next[v] is the next record of bucket v not yet known to belong
	// there; end[v] is the bucket's end.
	var next, end [256]int
	at := 0
	for v, c := range count {
		next[v] = at
		at += c
		end[v] = at
	}
	hand, spare := scratch[:size], scratch[size:]
	for v := range 256 {
		for next[v] < end[v] {
			i := next[v]
			if int(b[i*size+depth]) == v {
				next[v]++
				continue
			}
			// Lift record i and carry it round its cycle: each record
			// met goes to its bucket's next place, until one that
			// belongs at i comes back.
			copy(hand, b[i*size:(i+1)*size])
			for {
				d := hand[depth]
				if int(d) == v {
					break
				}
				j := next[d]
				next[d]++
				rj := b[j*size : (j+1)*size]
				move(spare, rj)
				move(rj, hand)
				hand, spare = spare, hand
			}
			copy(b[i*size:(i+1)*size], hand)
			next[v]++
		}
	}
	at = 0
	for _, c := range count {
		if c > 1 {
			sortRecordsFrom(b[at*size:(at+c)*size], size, key, depth+1, scratch)
		}
		at += c
	}
}

// insertionSort sorts a few records whose keys agree before byte depth.
func insertionSort(b []byte, size, key, depth int, tmp []byte) {
	for i := size; i < len(b); i += size {
		k := b[i+depth : i+key]
		j := i
		for j > 0 && bytes.Compare(b[j-size+depth:j-size+key], k) > 0 {
			j -= size
		}
		if j < i {
			copy(tmp, b[i:i+size])
			copy(b[j+size:i+size], b[j:i])
			copy(b[j:j+size], tmp)
		}
	}
}

// move copies a record to dst, a word at a time when its size allows:
// inline, where copy calls memmove, which took a third of the sort for
// 32-byte records.
func move(dst, src []byte) {
	if len(src)%8 != 0 {
		copy(dst, src)
		return
	}
	_ = dst[len(src)-1]
	for i := 0; i < len(src); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:]))
	}
}

// spill sorts the buffer and writes it to a new run file.
func (r *runs) spill() error {
	r.sortBuffer()
	f, err := os.CreateTemp(r.dir, spillPattern)
	if err != nil {
		return classify("spill", err)
	}
	r.files = append(r.files, f.Name())
	w := bufio.NewWriterSize(f, 1<<20)
	w.Write(r.buf)
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return classify("spill", err)
	}
	r.spilled += uint64(r.buffered())
	r.buf = r.buf[:0]
	return nil
}

// remove deletes the run files and drops the buffer.
func (r *runs) remove() {
	for _, p := range r.files {
		os.Remove(p)
	}
	r.files, r.buf = nil, nil
}

// merged yields, in ascending order and once each, every key of the runs
// and of the buffer (sorted first), repeats combined. A record's key is
// valid until the next record.
func (r *runs) merged() iter.Seq2[record, error] {
	ks, counted := r.keySize, r.counted
	return func(yield func(record, error) bool) {
		r.sortBuffer()
		var h runHeap
		for _, p := range r.files {
			f, err := os.Open(p)
			if err != nil {
				yield(record{}, classify("read spill", err))
				return
			}
			defer f.Close()
			cur := &runReader{r: bufio.NewReaderSize(f, 1<<20), rec: make([]byte, r.recSize), key: ks}
			if ok, err := cur.advance(); err != nil {
				yield(record{}, err)
				return
			} else if ok {
				h = append(h, cur)
			}
		}
		if len(r.buf) > 0 {
			cur := &runReader{mem: r.buf, rec: make([]byte, r.recSize), key: ks}
			cur.advance()
			h = append(h, cur)
		}
		heap.Init(&h)
		// out's key is a buffer of its own, reused: a record yielded is
		// valid until the next.
		out := record{key: make([]byte, ks)}
		have := false
		for h.Len() > 0 {
			top := h[0]
			key, count := top.rec[:ks], uint64(0)
			if counted {
				count = binary.BigEndian.Uint64(top.rec[ks:])
			}
			switch {
			case have && bytes.Equal(out.key, key):
				if counted {
					out.count = min(out.count+count, breachd.MaxPasswordCount)
				}
			default:
				if have && !yield(out, nil) {
					return
				}
				copy(out.key, key)
				out.count, have = count, true
			}
			ok, err := top.advance()
			if err != nil {
				yield(record{}, err)
				return
			}
			if ok {
				heap.Fix(&h, 0)
			} else {
				heap.Pop(&h)
			}
		}
		if have {
			yield(out, nil)
		}
	}
}

// runReader reads a sorted run: a spill file or the buffer.
type runReader struct {
	r   *bufio.Reader // a file's, or nil
	mem []byte        // the buffer's
	rec []byte        // the current record
	key int
}

func (r *runReader) advance() (bool, error) {
	if r.r == nil {
		if len(r.mem) == 0 {
			return false, nil
		}
		copy(r.rec, r.mem[:len(r.rec)])
		r.mem = r.mem[len(r.rec):]
		return true, nil
	}
	_, err := io.ReadFull(r.r, r.rec)
	switch {
	case err == io.EOF:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%w: spill file: %v", ErrCorrupt, err)
	}
	return true, nil
}

type runHeap []*runReader

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	return bytes.Compare(h[i].rec[:h[i].key], h[j].rec[:h[j].key]) < 0
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// staleSpills lists run files a crashed import left in dir.
func staleSpills(dir string) []string {
	ps, _ := filepath.Glob(filepath.Join(dir, spillPattern))
	return ps
}

// sideSpill buffers a bulk load's side rows (input.side) in a file in the
// corpus's directory (a run file by its name, so a crash's is removed at
// the next open), each as its key's and value's lengths (a byte each) and
// bytes, until the load's tables are written: the StreamWriter begins by
// wiping the corpus.
type sideSpill struct {
	f    *os.File
	w    *bufio.Writer
	rows uint64
}

func (s *sideSpill) add(dir string, rows []sideRow) error {
	if s.f == nil {
		f, err := os.CreateTemp(dir, spillPattern)
		if err != nil {
			return classify("spill", err)
		}
		s.f, s.w = f, bufio.NewWriterSize(f, 1<<20)
	}
	for _, r := range rows {
		s.w.WriteByte(byte(len(r.key)))
		s.w.Write(r.key)
		s.w.WriteByte(byte(len(r.val)))
		if _, err := s.w.Write(r.val); err != nil {
			return classify("spill", err)
		}
	}
	s.rows += uint64(len(rows))
	return nil
}

// writeTo writes the buffered rows to c with write batches, and removes
// the file.
func (s *sideSpill) writeTo(ctx context.Context, c *corpus) error {
	if s.f == nil {
		return nil
	}
	defer s.remove()
	if err := s.w.Flush(); err != nil {
		return classify("spill", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return classify("spill", err)
	}
	r := bufio.NewReaderSize(s.f, 1<<20)
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	field := func() ([]byte, error) {
		n, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		b := make([]byte, n)
		_, err = io.ReadFull(r, b)
		return b, err
	}
	for i := uint64(0); i < s.rows; i++ {
		if i%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		k, err := field()
		if err != nil {
			return classify("read side rows", err)
		}
		v, err := field()
		if err != nil {
			return classify("read side rows", err)
		}
		if err := wb.Set(k, v); err != nil {
			return classify("write batch", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return classify("write batch", err)
	}
	c.reach("bulk-side-written")
	return nil
}

// remove deletes the file.
func (s *sideSpill) remove() {
	if s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name())
		s.f, s.w, s.rows = nil, nil, 0
	}
}
