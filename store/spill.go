package store

import (
	"bufio"
	"bytes"
	"container/heap"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"

	"github.com/breachd/breachd"
)

// A first import's digests are sorted in bounded memory: the buffer is
// sorted, deduplicated and spilled to a file in the data directory each
// time it holds Options.BulkChunkDigests, and the commit merges the sorted
// runs. The spill files go when the import ends; a crash leaves them for
// the collection at the next open.

const spillPattern = "breachd.bulk.*.spill"

// spill sorts and deduplicates the buffer and writes it to a new run file.
func (imp *importTx) spill() error {
	s := imp.s
	ds := sortedUnique(imp.bulk)
	if err := s.checkSpace(int64(len(ds))*breachd.DigestSize, "spilling the bulk load of "+imp.breach.Name); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, spillPattern)
	if err != nil {
		return classify("spill", err)
	}
	imp.spills = append(imp.spills, f.Name())
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range ds {
		w.Write(ds[i][:])
	}
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return classify("spill", err)
	}
	imp.spilled += uint64(len(ds))
	imp.bulk = imp.bulk[:0]
	s.log.Debug("bulk load spilled a run", "breach", imp.breach.Name, "digests", len(ds), "runs", len(imp.spills))
	return nil
}

// removeSpills deletes the import's run files.
func (imp *importTx) removeSpills() {
	for _, p := range imp.spills {
		os.Remove(p)
	}
	imp.spills = nil
}

func sortedUnique(ds []breachd.Digest) []breachd.Digest {
	slices.SortFunc(ds, func(a, b breachd.Digest) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(ds)
}

// merged yields, in ascending order and once each, every digest of the
// spilled runs and of the buffer (sorted and deduplicated first).
func (imp *importTx) merged() iter.Seq2[breachd.Digest, error] {
	return func(yield func(breachd.Digest, error) bool) {
		imp.bulk = sortedUnique(imp.bulk)
		var h runHeap
		for _, p := range imp.spills {
			f, err := os.Open(p)
			if err != nil {
				yield(breachd.Digest{}, classify("read spill", err))
				return
			}
			defer f.Close()
			r := &run{r: bufio.NewReaderSize(f, 1<<20)}
			if ok, err := r.advance(); err != nil {
				yield(breachd.Digest{}, err)
				return
			} else if ok {
				h = append(h, r)
			}
		}
		if len(imp.bulk) > 0 {
			h = append(h, &run{mem: imp.bulk, cur: imp.bulk[0], pos: 1})
		}
		heap.Init(&h)
		var last breachd.Digest
		first := true
		for h.Len() > 0 {
			r := h[0]
			d := r.cur
			if first || d != last {
				if !yield(d, nil) {
					return
				}
				last, first = d, false
			}
			ok, err := r.advance()
			if err != nil {
				yield(breachd.Digest{}, err)
				return
			}
			if ok {
				heap.Fix(&h, 0)
			} else {
				heap.Pop(&h)
			}
		}
	}
}

// run is a sorted sequence of digests: a spill file or the buffer.
type run struct {
	r   *bufio.Reader    // a file's, or nil
	mem []breachd.Digest // the buffer's
	pos int
	cur breachd.Digest
}

func (r *run) advance() (bool, error) {
	if r.r == nil {
		if r.pos >= len(r.mem) {
			return false, nil
		}
		r.cur = r.mem[r.pos]
		r.pos++
		return true, nil
	}
	_, err := io.ReadFull(r.r, r.cur[:])
	switch {
	case err == io.EOF:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%w: spill file: %v", ErrCorrupt, err)
	}
	return true, nil
}

type runHeap []*run

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return bytes.Compare(h[i].cur[:], h[j].cur[:]) < 0 }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*run)) }
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
