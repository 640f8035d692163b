package server

import "sync"

// pool is a fixed set of goroutines that run the work of every bulk
// stream, so that many streams share the cores instead of each bringing
// workers of its own.
//
// The work channel is never closed: a stream's receiving goroutine can
// outlive its handler (it may be handing over work as the server stops),
// and a send on a closed channel panics. stop closes quit instead, which
// ends the workers and turns any later run away.
type pool struct {
	size int
	work chan func()
	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func newPool(n int) *pool {
	p := &pool{size: n, work: make(chan func()), quit: make(chan struct{})}
	p.wg.Add(n)
	for range n {
		go func() {
			defer p.wg.Done()
			for {
				select {
				case fn := <-p.work:
					fn()
				case <-p.quit:
					return
				}
			}
		}()
	}
	return p
}

// run hands fn to a free worker, waiting for one until done is closed or
// the pool stops; it reports whether fn was taken.
func (p *pool) run(done <-chan struct{}, fn func()) bool {
	select {
	case p.work <- fn:
		return true
	case <-done:
		return false
	case <-p.quit:
		return false
	}
}

// stop ends the workers, once each has finished the work it took.
func (p *pool) stop() {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
}
