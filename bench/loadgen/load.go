package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/dump"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// maxPresent bounds the present digests read from --corpus.
const maxPresent = 200_000

type load struct {
	c        config
	conn     *grpc.ClientConn
	exposure breachdv1.ExposureServiceClient
	health   healthpb.HealthClient
	present  []breachd.Digest
}

func newLoad(ctx context.Context, c config) (*load, error) {
	l := &load{c: c}
	if c.corpus != "" {
		f, err := os.Open(c.corpus)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		rd, err := dump.NewReader(f, dump.Options{})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.corpus, err)
		}
		defer rd.Close()
		buf := make([]breachd.Digest, 0, breachd.MaxBatch)
		for len(l.present) < maxPresent {
			ds, err := rd.Read(buf)
			l.present = append(l.present, ds...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.corpus, err)
			}
		}
	}
	if len(l.present) == 0 {
		l.c.absent = 1 // nothing known to be present: every check is a miss
	}
	// Round robin, as client.Dial: a dns:/// target with several
	// addresses (read replicas) spreads the load over them.
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		return nil, err
	}
	l.conn, l.exposure, l.health = conn, breachdv1.NewExposureServiceClient(conn), healthpb.NewHealthClient(conn)
	return l, nil
}

func (l *load) close() { l.conn.Close() }

// source yields digests, present with probability 1-absent, and whether
// each is present.
type source struct {
	r       *rand.Rand
	absent  float64
	present []breachd.Digest
}

func (l *load) source(seed uint64) *source {
	return &source{r: rand.New(rand.NewPCG(seed, 2011)), absent: l.c.absent, present: l.present}
}

func (s *source) next() (d breachd.Digest, present bool) {
	if len(s.present) > 0 && s.r.Float64() >= s.absent {
		return s.present[s.r.IntN(len(s.present))], true
	}
	for i := 0; i < len(d); i += 8 {
		binary.LittleEndian.PutUint64(d[i:], s.r.Uint64())
	}
	return d, false
}

// caller makes one call; worker w owns its own state.
type caller func(ctx context.Context, w int) error

func (l *load) healthCall() func(int) caller {
	return func(int) caller {
		req := &healthpb.HealthCheckRequest{}
		return func(ctx context.Context, _ int) error {
			_, err := l.health.Check(ctx, req)
			return err
		}
	}
}

func (l *load) checkCall() func(int) caller {
	return func(w int) caller {
		src := l.source(uint64(w) + 1)
		return func(ctx context.Context, _ int) error {
			d, present := src.next()
			resp, err := l.exposure.Check(ctx, &breachdv1.CheckRequest{EmailSha256: d[:]})
			if err != nil {
				return err
			}
			if resp.GetExposed() != present {
				return fmt.Errorf("check answered exposed=%v for a digest that is present=%v", resp.GetExposed(), present)
			}
			return nil
		}
	}
}

// result is one measurement: calls made in elapsed, and their latencies.
type result struct {
	calls   int
	elapsed time.Duration
	lat     []time.Duration // sorted
}

func (r result) qps() float64 { return float64(r.calls) / r.elapsed.Seconds() }

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))]
}

func merge(rs []result) result {
	var elapsed time.Duration
	lats := make([][]time.Duration, len(rs))
	for i, r := range rs {
		elapsed += r.elapsed
		lats[i] = r.lat
	}
	m, _ := gather(elapsed, lats, nil)
	return m
}

// gather ends a measurement: the first error a worker reported, or all the
// workers' latencies as one sorted result.
func gather(elapsed time.Duration, lats [][]time.Duration, errs chan error) (result, error) {
	select {
	case err := <-errs:
		return result{}, err
	default:
	}
	r := result{elapsed: elapsed}
	for _, lat := range lats {
		r.lat = append(r.lat, lat...)
	}
	r.calls = len(r.lat)
	slices.Sort(r.lat)
	return r, nil
}

// closedLoop runs n callers, each calling again as soon as its call returns.
func closedLoop(ctx context.Context, n int, dur time.Duration, mk func(int) caller) (result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lats := make([][]time.Duration, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call := mk(w)
			lat := make([]time.Duration, 0, 1<<14)
			for {
				t := time.Now()
				if t.After(deadline) {
					break
				}
				if err := call(ctx, w); err != nil {
					errs <- err
					cancel()
					break
				}
				lat = append(lat, time.Since(t))
			}
			lats[w] = lat
		}()
	}
	wg.Wait()
	return gather(time.Since(start), lats, errs)
}

// openLoop starts calls at a fixed rate whatever the answers' latency, and
// measures each from the moment it was due: a slow answer delays the calls
// behind it, and that delay is counted (no coordinated omission). A pacer
// releases each millisecond's calls to the workers in one go, which costs the
// client far less than a timer per call.
func openLoop(ctx context.Context, rate float64, dur time.Duration, workers int, mk func(int) caller) (result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	const tick = time.Millisecond
	due := make(chan time.Time, int(rate)+workers)
	lats := make([][]time.Duration, workers)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call := mk(w)
			var lat []time.Duration
			for at := range due {
				if err := call(ctx, w); err != nil {
					errs <- err
					cancel()
					break
				}
				lat = append(lat, time.Since(at))
			}
			lats[w] = lat
		}()
	}
	interval := float64(time.Second) / rate
	total := int(dur.Seconds() * rate)
	t := time.NewTicker(tick)
	for i := 0; i < total && ctx.Err() == nil; {
		now := <-t.C
		// Release every call due by now, each stamped with its own due time.
		for ; i < total; i++ {
			at := start.Add(time.Duration(float64(i) * interval))
			if at.After(now) {
				break
			}
			due <- at
		}
	}
	t.Stop()
	close(due)
	wg.Wait()
	return gather(time.Since(start), lats, errs)
}

// streamLoad keeps c.streams CheckStream streams busy with c.inFlight
// batches each, verifying every answer, and returns the digests answered.
func (l *load) streamLoad(ctx context.Context, dur time.Duration) (int, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A few distinct batches per stream, and the exposed count of each.
	type batch struct {
		packed  []byte
		exposed int
	}
	mkBatches := func(seed uint64) []batch {
		src := l.source(seed)
		bs := make([]batch, 16)
		for i := range bs {
			for range l.c.batch {
				d, present := src.next()
				bs[i].packed = append(bs[i].packed, d[:]...)
				if present {
					bs[i].exposed++
				}
			}
		}
		return bs
	}
	var answered atomic.Int64
	errs := make(chan error, 2*l.c.streams)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for s := range l.c.streams {
		bs := mkBatches(uint64(1000 + s))
		stream, err := l.exposure.CheckStream(ctx)
		if err != nil {
			return 0, 0, err
		}
		sent := make(chan int, l.c.inFlight) // batch indexes awaiting an answer, in order
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(sent)
			defer stream.CloseSend()
			req := &breachdv1.CheckStreamRequest{}
			for i := 0; time.Now().Before(deadline); i++ {
				req.EmailSha256 = bs[i%len(bs)].packed
				select {
				case sent <- i % len(bs):
				case <-ctx.Done():
					return
				}
				if err := stream.Send(req); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			resp := &breachdv1.CheckStreamResponse{}
			for i := range sent {
				if err := stream.RecvMsg(resp); err != nil {
					errs <- err
					cancel()
					return
				}
				if int(resp.Count) != l.c.batch || len(resp.ExposedIndex) != bs[i].exposed {
					errs <- fmt.Errorf("CheckStream answered %d digests, %d exposed; want %d and %d",
						resp.Count, len(resp.ExposedIndex), l.c.batch, bs[i].exposed)
					cancel()
					return
				}
				answered.Add(int64(resp.Count))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return 0, 0, err
	default:
	}
	return int(answered.Load()), elapsed, nil
}
