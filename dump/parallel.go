package dump

import (
	"errors"
	"io"
	"runtime"
	"sync"
)

// Both readers parse a dump on every core: one goroutine cuts it into
// blocks of whole lines, GOMAXPROCS workers turn each block's lines into
// items (digests, pairs, password records) and rejections, and Read hands
// the items out in the dump's order, counting each block's rows and
// reporting its rejections as it takes the block. An import is one
// goroutine from there on: parsing on it (canonicalising, SHA-256, CSV)
// was a fifth of a first import's CPU.

// parseBlockBytes is the size of the blocks a dump is cut into: about
// 4,000 rows of a breach dump, 6,000 of a password dump.
const parseBlockBytes = 256 << 10

var errClosed = errors.New("read after Close")

// parsed is a block of a dump, B, and what a worker made of it.
type parsed[B, T any] struct {
	in    B
	err   error         // what ended the dump after this block's rows, if anything
	done  chan struct{} // closed when parsed:
	items []T           // those Read has still to hand out
	all   []T           // recycled once handed out
	rejs  []rejectedRow
	rows  int64 // rows parsed, accepted or rejected
}

type rejectedRow struct {
	line   int64
	reason string
}

// parallel is the goroutines that cut and parse a dump, and the block
// being handed out.
type parallel[B, T any] struct {
	ordered chan *parsed[B, T] // every block, in order, as it is cut
	free    chan []T           // items' buffers to reuse
	stop    chan struct{}
	wg      sync.WaitGroup
	cur     *parsed[B, T]
	err     error // what ended the dump; io.EOF at its end
}

// startParallel starts the goroutines: cut cuts the dump into blocks and
// sends each (with the error that ends the dump after it, if any) until
// send reports false (Close) or it returns; GOMAXPROCS workers parse them
// with parse, which appends to the block's items.
func startParallel[B, T any](cut func(send func(in B, err error) bool), parse func(*parsed[B, T])) *parallel[B, T] {
	n := runtime.GOMAXPROCS(0)
	jobs := make(chan *parsed[B, T], n)
	p := &parallel[B, T]{ordered: make(chan *parsed[B, T], 2*n), free: make(chan []T, 3*n), stop: make(chan struct{})}
	send := func(in B, err error) bool {
		b := &parsed[B, T]{in: in, err: err, done: make(chan struct{})}
		for _, q := range []chan<- *parsed[B, T]{jobs, p.ordered} { // a worker first: Read waits for it
			select {
			case q <- b:
			case <-p.stop:
				return false
			}
		}
		return true
	}
	p.wg.Add(1 + n)
	go func() {
		defer p.wg.Done()
		defer close(jobs)
		defer close(p.ordered)
		cut(send)
	}()
	for range n {
		go func() {
			defer p.wg.Done()
			for b := range jobs {
				select {
				case b.items = <-p.free:
				default:
				}
				parse(b)
				close(b.done)
			}
		}()
	}
	return p
}

// read fills dst (up to its capacity) with the next items and returns
// them, calling taken with each block as it is taken; with what ended the
// dump, once it has ended, with the items before it.
func (p *parallel[B, T]) read(dst []T, taken func(*parsed[B, T])) ([]T, error) {
	dst = dst[:0]
	for len(dst) < cap(dst) {
		if p.cur == nil || len(p.cur.items) == 0 {
			if err := p.next(taken); err != nil {
				return dst, err
			}
			continue
		}
		n := copy(dst[len(dst):cap(dst)], p.cur.items)
		dst = dst[:len(dst)+n]
		p.cur.items = p.cur.items[n:]
	}
	return dst, nil
}

// next is done with the block being handed out and takes the next one. It
// returns what ended the dump, once it has ended.
func (p *parallel[B, T]) next(taken func(*parsed[B, T])) error {
	if b := p.cur; b != nil {
		p.cur = nil
		select {
		case p.free <- b.all[:0]:
		default:
		}
		if b.err != nil {
			p.err = b.err
		}
	}
	if p.err != nil {
		return p.err
	}
	b, ok := <-p.ordered
	if !ok {
		p.err = io.EOF
		return p.err
	}
	<-b.done
	p.cur, b.all = b, b.items
	taken(b)
	return nil
}

// close stops the goroutines, and waits for them.
func (p *parallel[B, T]) close() {
	close(p.stop)
	p.wg.Wait()
}

// readParallel is a Reader's Read, or ReadPairs, with parse for the rows:
// its first call starts the goroutines, on blocks from ReadBlock.
func readParallel[T any](r *Reader, dst []T, parse func(line string, scratch []string) (T, []string, string)) ([]T, error) {
	if r.closed {
		return dst[:0], errClosed
	}
	p, ok := r.par.(*parallel[*Block, T])
	if !ok {
		if r.par != nil {
			return dst[:0], errors.New("dump: Read and ReadPairs of the same Reader")
		}
		p = startParallel(r.cutBlocks, func(b *parsed[*Block, T]) {
			var fields []string
			eachLine(b.in, func(line int64, text, reject string) {
				b.rows++
				var x T
				if reject == "" {
					x, fields, reject = parse(text, fields)
				}
				if reject != "" {
					b.rejs = append(b.rejs, rejectedRow{line, reject})
					return
				}
				b.items = append(b.items, x)
			})
		})
		r.par = p
	}
	dst, err := p.read(dst, func(b *parsed[*Block, T]) {
		r.stats.Rows += b.rows
		r.stats.Accepted += int64(len(b.items))
		for _, j := range b.rejs {
			r.rejectAt(j.line, j.reason)
		}
	})
	return dst, endOfBatch(len(dst), err)
}

// cutBlocks cuts r's dump into blocks (ReadBlock) and sends them.
func (r *Reader) cutBlocks(send func(*Block, error) bool) {
	for {
		b, err := r.ReadBlock(r.blockBytes)
		if b == nil { // the end (ReadBlock returns a block with any other error)
			return
		}
		if !send(b, err) || err != nil {
			return
		}
	}
}

// Close stops reading: the goroutines that cut and parse the dump end
// (they end by themselves at its end). It does not close what the dump is
// read from.
func (r *Reader) Close() error {
	if !r.closed && r.par != nil {
		r.par.close()
	}
	r.closed = true
	return nil
}
