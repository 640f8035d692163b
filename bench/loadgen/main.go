package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/interrupt"
	"github.com/breachd/breachd/store"
)

func main() {
	ctx, stop := interrupt.Context() // a second Ctrl-C ends the process at once
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type config struct {
	addr        string
	adminAddr   string // the soak's imports and deletes: a started daemon's admin socket
	breachd     string
	data        string
	corpus      string
	concurrency []int
	duration    time.Duration
	rounds      int
	absent      float64
	streams     int
	batch       int
	inFlight    int
	soak        time.Duration
	soakWindow  time.Duration
	soakLoad    float64
	churn       int
	churnEvery  time.Duration
}

func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var conc string
	fs.StringVar(&c.addr, "addr", "", "address of a running daemon; without it loadgen starts --breachd on --data")
	fs.StringVar(&c.adminAddr, "admin-addr", "", "the soak's target for imports and deletes (default: --addr, or the started daemon's admin socket)")
	fs.StringVar(&c.breachd, "breachd", "bin/breachd", "daemon binary to start")
	fs.StringVar(&c.data, "data", "", "corpus directory the started daemon serves")
	fs.StringVar(&c.corpus, "corpus", "", "dump whose accounts are in the corpus (present digests come from it)")
	fs.StringVar(&conc, "concurrency", "1,8,64,128", "unary callers, comma separated")
	fs.DurationVar(&c.duration, "duration", 2*time.Second, "length of each measurement")
	fs.IntVar(&c.rounds, "rounds", 3, "rounds per measurement; medians are reported")
	fs.Float64Var(&c.absent, "absent", 0.95, "fraction of checks for digests not in the corpus")
	fs.IntVar(&c.streams, "streams", 2, "concurrent CheckStream streams")
	fs.IntVar(&c.batch, "batch", 1000, "digests per CheckStream batch")
	fs.IntVar(&c.inFlight, "in-flight", 8, "batches in flight per stream")
	fs.DurationVar(&c.soak, "soak", 0, "run a soak of this length instead of the report (see soak.go)")
	fs.DurationVar(&c.soakWindow, "soak-window", time.Minute, "soak: length of each reported window")
	fs.Float64Var(&c.soakLoad, "soak-load", 0.5, "soak: unary Check load as a fraction of the measured peak")
	fs.IntVar(&c.churn, "churn-accounts", 50_000, "soak: accounts in each breach imported and deleted alongside")
	fs.DurationVar(&c.churnEvery, "churn-interval", 30*time.Second, "soak: start an import-and-delete cycle this often (0: back to back)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, s := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return c, fmt.Errorf("--concurrency: %q is not a positive number", s)
		}
		c.concurrency = append(c.concurrency, n)
	}
	if (c.addr == "") == (c.data == "") {
		return c, errors.New("give either --addr or --data")
	}
	if c.rounds < 1 || c.duration <= 0 || c.streams < 1 || c.batch < 1 || c.batch > breachd.MaxBatch || c.inFlight < 1 ||
		c.absent < 0 || c.absent > 1 {
		return c, errors.New("--rounds, --duration, --streams and --in-flight must be positive, --batch 1..10000, --absent 0..1")
	}
	if c.soak < 0 || c.churnEvery < 0 || c.soakWindow <= 0 || c.soakLoad <= 0 || c.soakLoad > 1 || c.churn < 1 {
		return c, errors.New("--soak and --churn-interval must not be negative, --soak-window and --churn-accounts must be positive, --soak-load 0..1")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parse(args, stderr)
	if err != nil {
		return err
	}
	var d *daemon
	if c.addr == "" {
		if d, err = startDaemon(ctx, c.breachd, c.data, c.soak > 0, stderr); err != nil {
			return err
		}
		defer d.stop()
		c.addr = d.addr
		if c.adminAddr == "" { // a daemon without TLS takes admin calls on its socket
			c.adminAddr = adminTarget(c.data)
		}
	}
	l, err := newLoad(ctx, c)
	if err != nil {
		return err
	}
	defer l.close()
	if c.soak > 0 {
		return l.soak(ctx, stdout, d)
	}
	return l.report(ctx, stdout, d)
}

// adminTarget is the gRPC target of the admin socket of a daemon serving
// data (absolute, as store.AdminSocket is: make soak's --data is relative).
func adminTarget(data string) string { return "unix://" + store.AdminSocket(data) }
