package server

import "sync"

// pool is a fixed set of goroutines that run the work of every bulk
// stream, so that many streams share the cores instead of each bringing
// workers of its own.
type pool struct {
	size int
	work chan func()
	wg   sync.WaitGroup
	once sync.Once
}

func newPool(n int) *pool {
	p := &pool{size: n, work: make(chan func())}
	p.wg.Add(n)
	for range n {
		go func() {
			defer p.wg.Done()
			for fn := range p.work {
				fn()
			}
		}()
	}
	return p
}

// run hands fn to a free worker, waiting for one until done is closed; it
// reports whether fn was taken.
func (p *pool) run(done <-chan struct{}, fn func()) bool {
	select {
	case p.work <- fn:
		return true
	case <-done:
		return false
	}
}

// stop ends the workers once the server has stopped (no stream is left to
// hand them work).
func (p *pool) stop() {
	p.once.Do(func() { close(p.work) })
	p.wg.Wait()
}
