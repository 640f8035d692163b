package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/client"
)

// The soak (--soak DURATION): unary Checks at --soak-load of the measured
// peak, open loop, for DURATION, while a churn loop imports a breach of
// --churn-accounts accounts through the AdminService, checks a sample of it
// is exposed, and deletes the one before (checking its accounts are gone),
// one such cycle every --churn-interval.
// Every answer is verified. Each --soak-window is reported: calls, errors,
// latency, the daemon's memory and the churn done. At the end, if loadgen
// started the daemon, it sends SIGTERM under a closed-loop load and counts
// the calls started before the signal that failed: there must be none.
//
// run returns an error if any call failed, any answer was wrong, or an
// in-flight call failed at SIGTERM, so the soak is a test as well as a
// measurement.

// soakWindow is one reported window.
type soakWindow struct {
	calls, errs      int
	lat              []time.Duration // sorted
	mem              memory
	imports, deletes int64
}

// churnStats counts the churn loop's work; errs holds its failures.
type churnStats struct {
	imports, deletes atomic.Int64
	mu               sync.Mutex
	errs             []error
}

func (s *churnStats) fail(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

func (l *load) soak(ctx context.Context, w io.Writer, d *daemon) error {
	c := l.c
	if _, err := closedLoop(ctx, 8, time.Second, l.checkCall()); err != nil { // warm up
		return err
	}
	peak, err := closedLoop(ctx, 64, 3*time.Second, l.checkCall())
	if err != nil {
		return err
	}
	rate := c.soakLoad * peak.qps()
	fmt.Fprintf(w, "### Soak: %s of unary Checks at %.0f%% of peak (%.0f of %.0f QPS), %.0f%% absent, with a breach of %d accounts imported and the one before deleted every %s\n\n",
		c.soak, 100*c.soakLoad, rate, peak.qps(), 100*c.absent, c.churn, c.churnEvery)

	churnCtx, stopChurn := context.WithCancel(ctx)
	var churn churnStats
	churnDone := make(chan struct{})
	go func() {
		defer close(churnDone)
		l.churnLoop(churnCtx, &churn)
	}()
	wins, firstErrs := l.soakLoop(ctx, rate, c.soak, c.soakWindow, d, &churn)
	stopChurn()
	<-churnDone

	fmt.Fprintln(w, "| window end | calls | errors | p50 ms | p99 ms | p999 ms | RSS MiB | anonymous MiB | imports | deletes |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	var errs, calls int
	var p99s []float64
	var rss []int64
	for i, win := range wins {
		r := result{lat: win.lat}
		end := min(time.Duration(i+1)*c.soakWindow, c.soak)
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %.0f | %.0f | %d | %d |\n", end, win.calls, win.errs,
			ms(r.pct(0.5)), ms(r.pct(0.99)), ms(r.pct(0.999)), mib(win.mem.rss), mib(win.mem.anon), win.imports, win.deletes)
		errs, calls = errs+win.errs, calls+win.calls
		p99s = append(p99s, float64(r.pct(0.99))/1e6)
		if win.mem.rss > 0 {
			rss = append(rss, win.mem.rss)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Calls %d, errors %d; churn: %d imports, %d deletes, %d failures.\n", calls, errs,
		churn.imports.Load(), churn.deletes.Load(), len(churn.errs))
	if len(p99s) > 0 {
		fmt.Fprintf(w, "p99 over the windows: min %.3f ms, median %.3f ms, max %.3f ms.\n", slices.Min(p99s), median(p99s), slices.Max(p99s))
	}
	if len(rss) > 1 {
		// Flatness: every later window against the first (after warm-up).
		lo, hi := slices.Min(rss[1:]), slices.Max(rss[1:])
		fmt.Fprintf(w, "RSS after the first window: %.0f to %.0f MiB, %+.1f%% to %+.1f%% of the first window's %.0f MiB.\n",
			mib(lo), mib(hi), 100*(float64(lo)/float64(rss[0])-1), 100*(float64(hi)/float64(rss[0])-1), mib(rss[0]))
	}
	fmt.Fprintln(w)

	var failed []error
	failed = append(failed, firstErrs...)
	failed = append(failed, churn.errs...)
	if d != nil {
		inflight, err := sigtermUnderLoad(ctx, w, d, l.checkCall())
		if err != nil {
			failed = append(failed, err)
		}
		failed = append(failed, inflight...)
	}
	if len(failed) > 0 {
		return fmt.Errorf("soak failed: %d errors, first: %w", len(failed), failed[0])
	}
	return nil
}

// soakLoop paces calls as openLoop does, but goes on after an error:
// errors are counted per window, and the first few returned.
func (l *load) soakLoop(ctx context.Context, rate float64, dur, window time.Duration, d *daemon, churn *churnStats) ([]soakWindow, []error) {
	const workers = 256
	n := int((dur + window - 1) / window)
	wins := make([]soakWindow, n)
	lats := make([][][]time.Duration, workers) // worker, window
	errCount := make([]atomic.Int64, n)
	var errMu sync.Mutex
	var firstErrs []error
	due := make(chan time.Time, int(rate)+workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		lats[w] = make([][]time.Duration, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			call := l.checkCall()(w)
			for at := range due {
				i := min(n-1, int(at.Sub(start)/window))
				if err := call(ctx, w); err != nil {
					errCount[i].Add(1)
					errMu.Lock()
					if len(firstErrs) < 5 {
						firstErrs = append(firstErrs, err)
					}
					errMu.Unlock()
					continue
				}
				lats[w][i] = append(lats[w][i], time.Since(at))
			}
		}()
	}
	sample := func(i int) {
		if d != nil {
			wins[i].mem, _ = d.memory()
		}
		wins[i].imports, wins[i].deletes = churn.imports.Load(), churn.deletes.Load()
	}
	interval := float64(time.Second) / rate
	total := int(dur.Seconds() * rate)
	t := time.NewTicker(time.Millisecond)
	win := 0
	for i := 0; i < total && ctx.Err() == nil; {
		now := <-t.C
		for ; i < total; i++ {
			at := start.Add(time.Duration(float64(i) * interval))
			if at.After(now) {
				break
			}
			due <- at
		}
		if win < n-1 && now.Sub(start) >= time.Duration(win+1)*window {
			sample(win)
			win++
		}
	}
	t.Stop()
	close(due)
	wg.Wait()
	sample(n - 1)
	for i := range wins {
		for w := range workers {
			wins[i].lat = append(wins[i].lat, lats[w][i]...)
		}
		slices.Sort(wins[i].lat)
		wins[i].errs = int(errCount[i].Load())
		wins[i].calls = len(wins[i].lat) + wins[i].errs
	}
	return wins, firstErrs
}

// churnLoop imports breach SoakK, checks a sample of it is exposed, deletes
// SoakK-1 and checks a sample of that is not, until ctx ends; then it
// deletes the last one, leaving the corpus as it found it.
func (l *load) churnLoop(ctx context.Context, st *churnStats) {
	conn := l.conn
	if l.c.adminAddr != "" {
		ac, err := grpc.NewClient(l.c.adminAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			st.fail(err)
			return
		}
		defer ac.Close()
		conn = ac
	}
	cl := client.New(conn)
	sample := func(ds []breachd.Digest) []breachd.Digest {
		var s []breachd.Digest
		for i := 0; i < len(ds); i += max(1, len(ds)/50) {
			s = append(s, ds[i])
		}
		return s
	}
	verify := func(ctx context.Context, name string, ds []breachd.Digest, want bool) {
		for _, dg := range ds {
			r, err := cl.CheckDigest(ctx, dg)
			if err != nil {
				if ctx.Err() == nil {
					st.fail(fmt.Errorf("checking %s: %w", name, err))
				}
				return
			}
			if r.Exposed != want {
				st.fail(fmt.Errorf("an account of %s: exposed = %v, want %v", name, r.Exposed, want))
				return
			}
		}
	}
	var prev string
	var prevSample []breachd.Digest
	tick := time.NewTicker(max(l.c.churnEvery, time.Millisecond))
	defer tick.Stop()
	for k := 0; ctx.Err() == nil; k++ {
		if k > 0 && l.c.churnEvery > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
		}
		name := fmt.Sprintf("Soak%d", k)
		ds := churnDigests(uint64(k), l.c.churn)
		_, err := cl.Import(ctx, breachd.Breach{Name: name, Title: "Soak " + name, BreachDate: "2026-11-22"},
			func(yield func([]breachd.Digest, error) bool) { yield(ds, nil) })
		if ctx.Err() != nil {
			break // interrupted by the end of the soak: nothing was committed
		}
		if err != nil {
			st.fail(fmt.Errorf("importing %s: %w", name, err))
			time.Sleep(time.Second)
			continue
		}
		st.imports.Add(1)
		verify(ctx, name, sample(ds), true)
		if prev != "" {
			if _, _, err := cl.DeleteBreach(ctx, prev); err != nil {
				if ctx.Err() == nil {
					st.fail(fmt.Errorf("deleting %s: %w", prev, err))
				}
			} else {
				st.deletes.Add(1)
				verify(ctx, prev, prevSample, false)
			}
		}
		prev, prevSample = name, sample(ds)
	}
	if prev != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, _, err := cl.DeleteBreach(ctx, prev); err != nil {
			st.fail(fmt.Errorf("deleting %s at the end: %w", prev, err))
		} else {
			st.deletes.Add(1)
		}
	}
}

// churnDigests are breach k's accounts: random, so no dump account and no
// other churn breach shares them.
func churnDigests(k uint64, n int) []breachd.Digest {
	r := rand.New(rand.NewPCG(k, 0x50a4))
	ds := make([]breachd.Digest, n)
	for i := range ds {
		for j := 0; j < len(ds[i]); j += 8 {
			binary.LittleEndian.PutUint64(ds[i][j:], r.Uint64())
		}
	}
	return ds
}

// sigtermUnderLoad runs 32 closed-loop callers, sends the daemon SIGTERM a
// second in, and waits for it to exit. A call that started before the
// signal must succeed (the daemon finishes calls in flight); calls started
// after it may be refused. It returns the in-flight calls' errors.
func sigtermUnderLoad(ctx context.Context, w io.Writer, d *daemon, mk func(int) caller) ([]error, error) {
	const workers = 32
	var sentAt atomic.Int64 // unix ns; 0 until the signal is sent
	var mu sync.Mutex
	var inflight []error
	var before, after, refused atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call := mk(10_000 + i)
			for {
				select {
				case <-stop:
					return
				default:
				}
				t := time.Now().UnixNano()
				err := call(ctx, i)
				sig := sentAt.Load()
				switch {
				case sig != 0 && neverSent(err):
					// The client sent it only after the daemon's GOAWAY
					// (the daemon processes every stream sent before the
					// GOAWAY reached the client: grpc-go's two-phase
					// drain), so on a new connection, to a closed
					// listener: it started after the signal, whatever
					// the client's clock says (a caller descheduled
					// between its timestamp and its send).
					refused.Add(1)
					return
				case sig == 0 || t < sig:
					before.Add(1)
					if err != nil {
						mu.Lock()
						inflight = append(inflight, fmt.Errorf("a call started %s before SIGTERM failed: %w", time.Duration(sig-t), err))
						mu.Unlock()
					}
				case err != nil:
					refused.Add(1)
					return // the daemon is going away
				default:
					after.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	sentAt.Store(time.Now().UnixNano())
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		close(stop)
		wg.Wait()
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	var exitErr error
	select {
	case exitErr = <-exited:
	case <-time.After(30 * time.Second):
		exitErr = fmt.Errorf("the daemon did not exit within 30s of SIGTERM")
	}
	took := time.Since(time.Unix(0, sentAt.Load()))
	close(stop)
	wg.Wait()
	d.exited = true
	fmt.Fprintln(w, "### SIGTERM under load (32 closed-loop callers)")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Calls started before the signal: %d, failed: %d. Started after it: %d answered, %d refused. The daemon exited after %s: %v.\n",
		before.Load(), len(inflight), after.Load(), refused.Load(), took.Round(time.Millisecond), exitStatus(exitErr))
	if exitErr != nil {
		return inflight, fmt.Errorf("daemon exit after SIGTERM: %w", exitErr)
	}
	return inflight, nil
}

// neverSent reports whether a call failed before any connection took it:
// its new connection could not be dialled.
func neverSent(err error) bool {
	return status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "Error while dialing")
}

func exitStatus(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}
