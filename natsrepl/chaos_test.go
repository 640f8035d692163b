package natsrepl_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/daemon/daemontest"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/internal/porttest"
	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/store/storetest"
)

// TestReplicaChaos runs a writer and two replicas, all real daemons, on a
// real three-node JetStream cluster, with a load of checks that ask for a
// minimum version, while it kills NATS nodes and the object stream's
// leader, restarts the writer and the replicas, starts a second writer on
// the same buckets, and imports and deletes breaches (some large). A
// checker compares every answer with the writer's history at the answer's
// version, and a monitor finds any replica SERVING while it is behind a
// published version for longer than max_lag.
//
// BREACHD_CHAOS sets how long it runs (make replica-chaos: 5m; 8s in
// make test). It logs the lag from publication to each replica's applying
// it, per fault.
func TestReplicaChaos(t *testing.T) {
	t.Parallel()
	run := 8 * time.Second
	if s := os.Getenv("BREACHD_CHAOS"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("BREACHD_CHAOS=%q: %v", s, err)
		}
		run = d
	}
	const maxLag = 2 * time.Second
	nodes := newChaosCluster(t)
	h := newHistory()

	nopts := natsrepl.Options{Replicas: 3, MaxDeltas: 6, MaxLag: maxLag, Retry: 200 * time.Millisecond}
	writerDir := t.TempDir()
	writerConfig := func(dir string) daemon.Config {
		c := daemontest.Config(dir)
		c.Replication.Publish, c.Replication.NATS = nodes.url, nopts
		return c
	}
	replicaConfig := func(dir string) daemon.Config {
		c := daemontest.Config(dir)
		c.Replication.Follow, c.Replication.NATS = nodes.url, nopts
		return c
	}
	var logs logtest.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("daemon logs:\n%s", logs.String())
		}
	}()
	start := func(c daemon.Config) *daemon.Daemon {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		who := "writer " + c.Data
		if c.Replication.Follow != "" {
			who = "replica " + c.Data
		}
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("who", who)
		d, err := daemon.Start(ctx, c, log)
		if err != nil {
			t.Fatalf("daemon.Start: %v", err)
		}
		return d
	}
	var writer atomic.Pointer[target]
	writer.Store(newTarget(t, start(writerConfig(writerDir))))
	// A first breach, so that replicas have a version to serve.
	h.importBreach(t, writer.Load().d, 0, 500)

	replicaDirs := []string{t.TempDir(), t.TempDir()}
	replicas := make([]atomic.Pointer[target], len(replicaDirs))
	for i, dir := range replicaDirs {
		replicas[i].Store(newTarget(t, start(replicaConfig(dir))))
	}
	defer func() {
		for i := range replicas {
			if r := replicas[i].Load(); r != nil {
				r.close()
			}
		}
		writer.Load().close()
	}()

	// The run starts once the replicas serve: a cluster just formed may
	// take seconds to accept the writer's buckets, and those seconds are
	// not chaos.
	waitFor(t, "the replicas to hold the first breach", func() bool {
		for i := range replicas {
			if replicas[i].Load().d.Emails().Version() < 1 {
				return false
			}
		}
		return true
	})
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup

	// The load: checks of imported, deleted and never-imported accounts,
	// each asking for a version the writer has committed.
	var answers, unavailable atomic.Int64
	var wrongMu sync.Mutex
	var recorded []answer
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for ctx.Err() == nil {
				tg := writer.Load()
				if rng.IntN(4) > 0 {
					tg = replicas[rng.IntN(len(replicas))].Load()
				}
				if tg == nil {
					continue
				}
				d, minV := h.pick(rng)
				cctx, cancel := context.WithTimeout(client.AtLeast(ctx, minV), 3*time.Second)
				res, err := tg.c.CheckDigest(cctx, d)
				cancel()
				if err != nil {
					unavailable.Add(1) // a daemon restarting, a replica catching up: no answer is no wrong answer
					continue
				}
				answers.Add(1)
				var names []string
				for _, b := range res.Breaches {
					names = append(names, b.Name)
				}
				wrongMu.Lock()
				recorded = append(recorded, answer{d: d, names: names, version: res.CorpusVersion, min: minV})
				wrongMu.Unlock()
			}
		}()
	}

	// The monitor: publication times from the bucket, and each replica's
	// version and readiness every 20 ms.
	pubs := watchPublished(t, ctx, nodes.url)
	var stale atomic.Int64
	var staleMsg atomic.Value
	lags := newLagLog()
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			now := time.Now()
			for i := range replicas {
				r := replicas[i].Load()
				if r == nil {
					continue
				}
				v := r.d.Emails().Version()
				lags.applied(i, v, now)
				ready, _ := r.d.Ready()
				if u, at, ok := pubs.firstAfter(v); ok && ready && now.Sub(at) > maxLag+time.Second {
					stale.Add(1)
					_, during, _ := h.committed(u)
					staleMsg.Store(fmt.Sprintf("replica %d SERVING at version %d, %s after version %d was published (committed during %q)", i, v, now.Sub(at).Round(time.Millisecond), u, during))
				}
			}
		}
	}()

	// A replica that exits (a resync: its chain is gone) is started again,
	// as systemd would: it empties its corpus and loads a snapshot.
	var resyncs atomic.Int64
	heal := func() {
		for i := range replicas {
			r := replicas[i].Load()
			if r == nil {
				continue
			}
			select {
			case err := <-r.d.Failed():
				t.Logf("replica %d exited (%v); starting it again", i, err)
				resyncs.Add(1)
				replicas[i].Store(nil)
				r.close()
				replicas[i].Store(newTarget(t, start(replicaConfig(replicaDirs[i]))))
			default:
			}
		}
	}

	// The faults, in turn, each beside an import and now and then a delete.
	faults := []string{"kill a NATS node", "restart a replica", "kill the object stream's leader", "second writer", "restart the writer", "delete a large breach"}
	deadline := time.Now().Add(run)
	k := 1
	for round := 0; time.Now().Before(deadline) || round < len(faults); round++ {
		fault := faults[round%len(faults)]
		h.setFault(fault)
		size := 300
		if k%5 == 0 {
			size = 5000 // a large breach, deleted by "delete a large breach"
		}
		switch fault {
		case "kill a NATS node", "kill the object stream's leader":
			n := rand.IntN(3)
			if fault == "kill the object stream's leader" {
				n = nodes.leader(t, "OBJ_"+natsrepl.DefaultObjectBucket)
			}
			nodes.kill(n)
			h.importBreach(t, writer.Load().d, k, size)
			k++
			time.Sleep(500 * time.Millisecond)
			nodes.restart(t, n)
		case "restart a replica":
			i := rand.IntN(len(replicas))
			r := replicas[i].Swap(nil)
			r.close()
			h.importBreach(t, writer.Load().d, k, size)
			k++
			replicas[i].Store(newTarget(t, start(replicaConfig(replicaDirs[i]))))
		case "second writer":
			// Only once the writer holds the lease (it has published):
			// before that, whichever daemon takes the lease first is the
			// writer, and the other the second one.
			v := h.latest()
			waitFor(t, "the writer to publish its last version", func() bool { return pubs.has(v) })
			second := start(writerConfig(t.TempDir()))
			ds := h.outsiders(t, second) // its accounts must never be answered anywhere
			select {
			case err := <-second.Failed():
				if !strings.Contains(err.Error(), "lease") {
					t.Errorf("the second writer stopped with %v, want the lease named", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("a second writer on the same buckets was not stopped within 20s (it imported %d accounts)", len(ds))
			}
			second.Close()
			h.importBreach(t, writer.Load().d, k, size)
			k++
		case "restart the writer":
			writer.Swap(nil).close()
			w := newTarget(t, start(writerConfig(writerDir)))
			writer.Store(w)
			h.importBreach(t, w.d, k, size)
			k++
		case "delete a large breach":
			h.importBreach(t, writer.Load().d, k, size)
			k++
			h.deleteLargest(t, writer.Load().d)
		}
		if k > 3 && k%3 == 0 {
			h.deleteOldest(t, writer.Load().d)
		}
		heal()
		time.Sleep(200 * time.Millisecond)
	}
	// Let the replicas catch up, then stop the load.
	final := h.latest()
	for caughtUp := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		behind := 0
		for i := range replicas {
			if r := replicas[i].Load(); r == nil || r.d.Emails().Version() < final {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		heal()
		if time.Now().After(caughtUp) {
			t.Errorf("%d replicas still behind the writer's last version %d 30s after the last fault", behind, final)
			break // the answers are checked all the same
		}
	}
	stop()
	wg.Wait()

	wrong := 0
	for _, a := range recorded {
		if msg := h.verify(a); msg != "" {
			if wrong < 10 {
				t.Error(msg)
			}
			wrong++
		}
	}
	t.Logf("%d answers checked (%d calls without an answer), %d wrong; %d breaches imported, writer at version %d",
		len(recorded), unavailable.Load(), wrong, k, final)
	if answers.Load() < 20 {
		t.Errorf("only %d answers in the run: the load did not run", answers.Load())
	}
	if n := stale.Load(); n > 0 {
		t.Errorf("%d samples of a replica SERVING while stale beyond max_lag (%s); last: %v", n, maxLag, staleMsg.Load())
	}
	lags.report(t, h)
	t.Logf("replicas that had to start again from a snapshot (exited, emptied, restarted): %d", resyncs.Load())
}

// target is a daemon and a client of it.
type target struct {
	d    *daemon.Daemon
	conn interface{ Close() error }
	c    *client.Client
}

func newTarget(t *testing.T, d *daemon.Daemon) *target {
	conn, err := client.Dial(d.Addr(), client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &target{d: d, conn: conn, c: client.New(conn, client.WithRetries(0, 50*time.Millisecond))}
}

func (tg *target) close() {
	tg.conn.Close()
	tg.d.Close()
}

// answer is one answer of the load.
type answer struct {
	d       breachd.Digest
	names   []string
	version uint64
	min     uint64
}

// history is the writer's: the breaches present at each version, and the
// accounts of each breach.
type history struct {
	mu      sync.Mutex
	present []map[string]bool // by version (0: none)
	at      []time.Time       // when each version was committed
	during  []string          // and during which fault
	fault   string            // the fault running now
	members map[breachd.Digest][]string
	digests map[string][]breachd.Digest
	order   []string // imported, oldest first, still present
	foreign []breachd.Digest
}

func newHistory() *history {
	return &history{present: []map[string]bool{{}}, at: []time.Time{{}}, during: []string{""}, members: map[breachd.Digest][]string{}, digests: map[string][]breachd.Digest{}}
}

// committed returns when version v was committed on the writer, and
// during which fault.
func (h *history) committed(v uint64) (time.Time, string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v == 0 || v >= uint64(len(h.at)) {
		return time.Time{}, "", false
	}
	return h.at[v], h.during[v], true
}

// setFault names the fault running from now on.
func (h *history) setFault(name string) {
	h.mu.Lock()
	h.fault = name
	h.mu.Unlock()
}

func (h *history) latest() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return uint64(len(h.present) - 1)
}

// commit records the state at version v.
func (h *history) commit(t *testing.T, v uint64, change func(map[string]bool)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v != uint64(len(h.present)) {
		t.Fatalf("the writer committed version %d after %d", v, len(h.present)-1)
	}
	next := map[string]bool{}
	for b := range h.present[len(h.present)-1] {
		next[b] = true
	}
	change(next)
	h.present = append(h.present, next)
	h.at = append(h.at, time.Now())
	h.during = append(h.during, h.fault)
}

// importBreach imports breach k of n accounts on the writer; it shares 30
// accounts with the breach before it.
func (h *history) importBreach(t *testing.T, w *daemon.Daemon, k, n int) {
	t.Helper()
	name := fmt.Sprintf("B%03d", k)
	ds := storetest.Digests(name, n)
	h.mu.Lock()
	if k > 0 {
		prev := h.digests[fmt.Sprintf("B%03d", k-1)]
		ds = append(ds, prev[:min(30, len(prev))]...)
	}
	h.digests[name] = ds
	for _, d := range ds {
		h.members[d] = append(h.members[d], name)
	}
	h.mu.Unlock()
	var st breachd.ImportStats
	var err error
	for range 3 { // the writer may be a moment from holding its lease again
		if st, err = daemontest.Import(t.Context(), w, breachd.Breach{Name: name, Title: name}, ds); err == nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Fatalf("importing %s: %v", name, err)
	}
	h.commit(t, st.Version, func(p map[string]bool) { p[name] = true })
	h.mu.Lock()
	h.order = append(h.order, name)
	h.mu.Unlock()
}

func (h *history) deleteOldest(t *testing.T, w *daemon.Daemon) {
	h.mu.Lock()
	name := h.order[0]
	h.mu.Unlock()
	h.delete(t, w, name)
}

func (h *history) deleteLargest(t *testing.T, w *daemon.Daemon) {
	h.mu.Lock()
	name := slices.MaxFunc(h.order, func(a, b string) int { return len(h.digests[a]) - len(h.digests[b]) })
	h.mu.Unlock()
	h.delete(t, w, name)
}

func (h *history) delete(t *testing.T, w *daemon.Daemon, name string) {
	t.Helper()
	_, v, err := w.Service().DeleteBreach(t.Context(), name)
	if err != nil {
		t.Fatalf("deleting %s: %v", name, err)
	}
	h.commit(t, v, func(p map[string]bool) { delete(p, name) })
	h.mu.Lock()
	h.order = slices.DeleteFunc(h.order, func(b string) bool { return b == name })
	h.mu.Unlock()
}

// outsiders imports a breach into a second writer: accounts that no answer
// may ever report.
func (h *history) outsiders(t *testing.T, second *daemon.Daemon) []breachd.Digest {
	ds := storetest.Digests("intruder", 200)
	daemontest.Import(t.Context(), second, breachd.Breach{Name: "Intruder", Title: "Intruder"}, ds)
	h.mu.Lock()
	h.foreign = append(h.foreign, ds...)
	h.mu.Unlock()
	return ds
}

// pick returns an account to check (of a present, a deleted or no breach,
// or the second writer's) and the latest version committed.
func (h *history) pick(rng *rand.Rand) (breachd.Digest, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := uint64(len(h.present) - 1)
	switch r := rng.IntN(10); {
	case r == 0 && len(h.foreign) > 0:
		return h.foreign[rng.IntN(len(h.foreign))], v
	case r == 1:
		return storetest.Digests(fmt.Sprintf("never%d", rng.IntN(1000)), 1)[0], v
	}
	names := make([]string, 0, len(h.digests))
	for n := range h.digests {
		names = append(names, n)
	}
	sort.Strings(names)
	ds := h.digests[names[rng.IntN(len(names))]]
	return ds[rng.IntN(len(ds))], v
}

// verify returns why answer a is wrong, or "".
func (h *history) verify(a answer) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a.version < a.min {
		return fmt.Sprintf("an answer at version %d to a call asking for at least %d", a.version, a.min)
	}
	if a.version >= uint64(len(h.present)) {
		return fmt.Sprintf("an answer at version %d, which the writer never committed (it reached %d)", a.version, len(h.present)-1)
	}
	var want []string
	for _, b := range h.members[a.d] {
		if h.present[a.version][b] {
			want = append(want, b)
		}
	}
	got := slices.Clone(a.names)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		return fmt.Sprintf("account %x… at version %d: answered %v, the writer's history says %v", a.d[:4], a.version, got, want)
	}
	return ""
}

// published records when each email-corpus version was published (the
// entry's own time), watched on the key-value bucket.
type published struct {
	mu sync.Mutex
	at map[uint64]time.Time
}

func watchPublished(t *testing.T, ctx context.Context, url string) *published {
	p := &published{at: map[uint64]time.Time{}}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		<-ctx.Done()
		nc.Close()
	}()
	go func() {
		js, _ := jetstream.New(nc)
		for ctx.Err() == nil {
			kv, err := js.KeyValue(ctx, natsrepl.DefaultKVBucket)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			w, err := kv.Watch(ctx, "current")
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for e := range w.Updates() {
				if e == nil {
					continue
				}
				var v struct {
					Version   uint64    `json:"version"`
					Published time.Time `json:"published"`
				}
				if json.Unmarshal(e.Value(), &v) == nil {
					p.mu.Lock()
					if _, seen := p.at[v.Version]; !seen {
						p.at[v.Version] = v.Published
					}
					p.mu.Unlock()
				}
			}
		}
	}()
	return p
}

// has reports whether version v was published.
func (p *published) has(v uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.at[v]
	return ok
}

// firstAfter returns the oldest version published above v and when.
func (p *published) firstAfter(v uint64) (uint64, time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	best, ok := uint64(0), false
	for u := range p.at {
		if u > v && (!ok || u < best) {
			best, ok = u, true
		}
	}
	return best, p.at[best], ok
}

// lagLog measures, for each version, how long after its commit on the
// writer each replica held it, by the fault running at the commit.
type lagLog struct {
	mu   sync.Mutex
	seen map[[2]uint64]time.Time // (replica, version) -> first seen holding it
	last map[int]uint64
}

func newLagLog() *lagLog {
	return &lagLog{seen: map[[2]uint64]time.Time{}, last: map[int]uint64{}}
}

func (l *lagLog) applied(replica int, v uint64, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for u := l.last[replica] + 1; u <= v; u++ {
		key := [2]uint64{uint64(replica), u}
		if _, ok := l.seen[key]; !ok {
			l.seen[key] = at
		}
	}
	l.last[replica] = max(l.last[replica], v)
}

func (l *lagLog) report(t *testing.T, h *history) {
	l.mu.Lock()
	defer l.mu.Unlock()
	byFault := map[string][]time.Duration{}
	for key, at := range l.seen {
		committed, fault, ok := h.committed(key[1])
		if !ok || fault == "" {
			continue // the first breach, before the replicas start
		}
		byFault[fault] = append(byFault[fault], max(0, at.Sub(committed)))
	}
	for _, f := range slices.Sorted(func(yield func(string) bool) {
		for f := range byFault {
			if !yield(f) {
				return
			}
		}
	}) {
		ds := byFault[f]
		slices.Sort(ds)
		t.Logf("lag from the writer's commit to a replica holding it, %-32s n=%3d  p50 %6s  p90 %6s  max %6s", f+":", len(ds),
			ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)*9/10].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
}

// chaosCluster is a three-node JetStream cluster whose nodes can be killed
// and restarted on the same ports and storage.
type chaosCluster struct {
	opts  []*server.Options
	nodes []*server.Server
	url   string
}

func newChaosCluster(t *testing.T) *chaosCluster {
	t.Helper()
	// A node restarts on the ports it had, so they are reserved below
	// the ephemeral range: a port the kernel hands out could be taken by
	// another test's connection while its node is down (or before it
	// first starts), and the node would never start.
	free := func() int {
		p, err := porttest.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := &chaosCluster{}
	var routes, urls []string
	type ports struct{ client, cluster int }
	var ps []ports
	for range 3 {
		p := ports{free(), free()}
		ps = append(ps, p)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p.cluster))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", p.client))
	}
	for i, p := range ps {
		c.opts = append(c.opts, &server.Options{ServerName: fmt.Sprintf("c%d", i+1), Host: "127.0.0.1", Port: p.client, JetStream: true,
			StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "breachd-chaos", Host: "127.0.0.1", Port: p.cluster},
			Routes:  server.RoutesFromStr(strings.Join(routes, ","))})
		c.nodes = append(c.nodes, nil)
		c.restart(t, i)
	}
	t.Cleanup(func() {
		for _, s := range c.nodes {
			if s != nil {
				s.Shutdown()
			}
		}
	})
	c.url = strings.Join(urls, ",")
	waitLeader(t, c.url)
	return c
}

// kill stops node i at once.
func (c *chaosCluster) kill(i int) {
	c.nodes[i].Shutdown()
	c.nodes[i].WaitForShutdown()
}

// restart starts node i again on its ports and storage.
func (c *chaosCluster) restart(t *testing.T, i int) {
	t.Helper()
	o := *c.opts[i]
	s, err := server.NewServer(&o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatalf("NATS node %d did not start", i+1)
	}
	c.nodes[i] = s
}

// leader returns the node leading stream name (a random one if none can
// tell).
func (c *chaosCluster) leader(t *testing.T, stream string) int {
	nc, err := nats.Connect(c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if s, err := js.Stream(ctx, stream); err == nil {
		if info, err := s.Info(ctx); err == nil && info.Cluster != nil {
			for i, o := range c.opts {
				if o.ServerName == info.Cluster.Leader {
					return i
				}
			}
		}
	}
	return rand.IntN(len(c.nodes))
}
