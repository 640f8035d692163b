package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"
)

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

// report runs every measurement and writes them as Markdown.
func (l *load) report(ctx context.Context, w io.Writer, d *daemon) error {
	c := l.c
	fmt.Fprintf(w, "Daemon at %s; %d present digests from %q; %.0f%% of checks absent; %d rounds of %s per measurement, medians; loadgen GOMAXPROCS %d.\n\n",
		c.addr, len(l.present), c.corpus, 100*c.absent, c.rounds, c.duration, runtime.GOMAXPROCS(0))
	if d != nil {
		fmt.Fprintf(w, "Daemon start to SERVING (open Badger, load the filter): %s.\n\n", d.started.Round(time.Millisecond))
	}

	// Warm up connections, caches and the daemon's goroutine pools.
	if _, err := closedLoop(ctx, 8, time.Second, l.checkCall()); err != nil {
		return err
	}

	fmt.Fprintln(w, "### Unary Check against the gRPC health Check baseline (one connection)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| callers | health QPS | Check QPS | ratio | health p50 / p99 ms | Check p50 / p99 / p999 ms |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---|---|")
	var peak float64
	for _, n := range c.concurrency {
		var hq, cq, ratio []float64
		var hs, cs []result
		for range c.rounds {
			h, err := closedLoop(ctx, n, c.duration, l.healthCall())
			if err != nil {
				return fmt.Errorf("health Check: %w", err)
			}
			k, err := closedLoop(ctx, n, c.duration, l.checkCall())
			if err != nil {
				return fmt.Errorf("unary check: %w", err)
			}
			hq, cq, ratio = append(hq, h.qps()), append(cq, k.qps()), append(ratio, k.qps()/h.qps())
			hs, cs = append(hs, h), append(cs, k)
		}
		h, k := merge(hs), merge(cs)
		peak = max(peak, median(cq))
		fmt.Fprintf(w, "| %d | %.0f | %.0f | %.2f | %s / %s | %s / %s / %s |\n", n, median(hq), median(cq), median(ratio),
			ms(h.pct(0.5)), ms(h.pct(0.99)), ms(k.pct(0.5)), ms(k.pct(0.99)), ms(k.pct(0.999)))
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "### Unary Check under open-loop load (latency from each call's due time)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| load | target QPS | achieved QPS | p50 ms | p99 ms | p999 ms | max ms |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|")
	for _, frac := range []float64{0.5, 0.8} {
		rate := frac * peak
		r, err := openLoop(ctx, rate, time.Duration(c.rounds)*c.duration, 256, l.checkCall())
		if err != nil {
			return fmt.Errorf("unary check at %.0f%%: %w", 100*frac, err)
		}
		fmt.Fprintf(w, "| %.0f%% of peak | %.0f | %.0f | %s | %s | %s | %s |\n", 100*frac, rate, r.qps(),
			ms(r.pct(0.5)), ms(r.pct(0.99)), ms(r.pct(0.999)), ms(r.lat[len(r.lat)-1]))
	}
	fmt.Fprintln(w)

	var rates []float64
	for range c.rounds {
		n, el, err := l.streamLoad(ctx, c.duration)
		if err != nil {
			return fmt.Errorf("CheckStream: %w", err)
		}
		rates = append(rates, float64(n)/el.Seconds())
	}
	slices.Sort(rates)
	fmt.Fprintln(w, "### CheckStream")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| streams | batch | batches in flight per stream | digests/s (median) | min | max |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| %d | %d | %d | %.0f | %.0f | %.0f |\n\n", c.streams, c.batch, c.inFlight, median(rates), rates[0], rates[len(rates)-1])

	if d != nil {
		if m, err := d.memory(); err == nil {
			mib := func(b int64) float64 { return float64(b) / (1 << 20) }
			fmt.Fprintf(w, "Daemon memory after the run: RSS %.0f MiB (anonymous %.0f, mapped files %.0f), peak RSS %.0f MiB.\n",
				mib(m.rss), mib(m.anon), mib(m.file), mib(m.peak))
		}
	}
	return nil
}
