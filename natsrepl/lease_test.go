package natsrepl_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// single is one JetStream server on loopback.
type single struct {
	t   *testing.T
	o   server.Options
	s   *server.Server
	kv  jetstream.KeyValue
	obs jetstream.ObjectStore
}

func startSingle(t *testing.T) *single {
	t.Helper()
	n := &single{t: t, o: server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}}
	n.start()
	return n
}

func (n *single) start() {
	n.t.Helper()
	s, err := server.NewServer(&n.o)
	if err != nil {
		n.t.Fatal(err)
	}
	go s.Start()
	n.t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(20 * time.Second) {
		n.t.Fatal("NATS did not start")
	}
	n.s = s
}

func (n *single) url() string { return n.s.ClientURL() }

// buckets opens the buckets a publisher made, for the test to look into.
func (n *single) buckets() (jetstream.KeyValue, jetstream.ObjectStore) {
	n.t.Helper()
	if n.kv != nil {
		return n.kv, n.obs
	}
	nc, err := nats.Connect(n.url())
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	waitFor(n.t, "the buckets", func() bool {
		n.kv, _ = js.KeyValue(n.t.Context(), natsrepl.DefaultKVBucket)
		n.obs, _ = js.ObjectStore(n.t.Context(), natsrepl.DefaultObjectBucket)
		return n.kv != nil && n.obs != nil
	})
	return n.kv, n.obs
}

// current is the version current names, 0 if none.
func (n *single) current() uint64 {
	kv, _ := n.buckets()
	e, err := kv.Get(n.t.Context(), "current")
	if err != nil {
		return 0
	}
	var v struct{ Version uint64 }
	json.Unmarshal(e.Value(), &v)
	return v.Version
}

// writer is a corpus and its publisher.
type writer struct {
	st     *store.Store
	dir    string
	pub    *natsrepl.Publisher
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func newWriter(t *testing.T) *writer {
	t.Helper()
	w := &writer{dir: t.TempDir()}
	var err error
	if w.st, err = store.Open(t.Context(), w.dir, storeOptions()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.st.Close() })
	return w
}

func (w *writer) publish(t *testing.T, o natsrepl.Options, advertise string) {
	ctx, cancel := context.WithCancel(context.Background())
	w.pub = natsrepl.NewPublisher(w.st, w.dir, advertise, o)
	w.cancel, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		w.err = w.pub.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-w.done })
}

func (w *writer) imp(t *testing.T, name string, ds []breachd.Digest) uint64 {
	t.Helper()
	v, err := w.st.Import(t.Context(), storetest.Breach(name), storetest.Batches(ds, 1000, nil))
	if err != nil {
		t.Fatal(err)
	}
	if w.pub != nil {
		w.pub.Kick()
	}
	return v.Version
}

func newReplica(t *testing.T, dir string) *replica {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	fo := storeOptions()
	fo.Follower = true
	r := &replica{dir: dir}
	var err error
	if r.st, err = store.Open(t.Context(), dir, fo); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r.cancel != nil {
			r.stop()
		}
		r.st.Close()
		if t.Failed() && r.logs != nil {
			t.Logf("replica's log since its last start:\n%s", r.logs.String())
		}
	})
	return r
}

// answers checks that r answers want for every digest of ds.
func answers(t *testing.T, st *store.Store, ds []breachd.Digest, want []string) {
	t.Helper()
	for _, d := range ds {
		if got := lookupNames(t, st, d); !slices.Equal(got, want) {
			t.Fatalf("answer %v, want %v", got, want)
		}
	}
}

// TestSecondWriter: a second writer on the same buckets publishes nothing
// and its Run ends with the lease holder named; the replicas go on
// following the first.
func TestSecondWriter(t *testing.T) {
	t.Parallel()
	n := startSingle(t)
	o := natsrepl.Options{URL: n.url(), Retry: 100 * time.Millisecond}
	a, b, c := storetest.Digests("a", 2000), storetest.Digests("b", 2000), storetest.Digests("c", 2000)
	w1 := newWriter(t)
	w1.imp(t, "Alpha", a)
	w1.publish(t, o, "writer-one:7355")
	r := newReplica(t, "")
	r.start(o)
	waitFor(t, "the replica at version 1", func() bool { return ready(r.f) && r.st.Version() == 1 })

	w2 := newWriter(t)
	w2.imp(t, "Beta", b)
	w2.imp(t, "Beta2", b[:10])
	w2.publish(t, o, "writer-two:7355")
	select {
	case <-w2.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the second writer is still running")
	}
	var le *natsrepl.LeaseError
	if !errors.As(w2.err, &le) || le.Holder.Addr != "writer-one:7355" || !strings.Contains(w2.err.Error(), "another writer holds the lease") {
		t.Fatalf("the second writer's Run = %v, want a lease error naming writer-one", w2.err)
	}
	if v := n.current(); v != 1 {
		t.Fatalf("current is version %d after the second writer, want 1", v)
	}
	w1.imp(t, "Gamma", c)
	waitFor(t, "the replica at version 2", func() bool { return r.st.Version() == 2 })
	answers(t, r.st, a[:100], []string{"Alpha"})
	answers(t, r.st, c[:100], []string{"Gamma"})
	answers(t, r.st, b[:100], nil)
}

// TestTakeover hands the lease to a standby writer with another corpus:
// the old writer stops at once; an entry it publishes late is ignored; the
// replica never serves a mix, stops when the new writer's history begins,
// and, reset and restarted, serves the new writer's corpus exactly.
func TestTakeover(t *testing.T) {
	t.Parallel()
	n := startSingle(t)
	o := natsrepl.Options{URL: n.url(), Retry: 100 * time.Millisecond}
	a, b := storetest.Digests("a", 3000), storetest.Digests("b", 3000)
	old := newWriter(t)
	old.imp(t, "Alpha", a)
	old.publish(t, o, "old:7355")
	r := newReplica(t, "")
	r.start(o)
	waitFor(t, "the replica at version 1", func() bool { return ready(r.f) && r.st.Version() == 1 })

	standby := newWriter(t)
	standby.imp(t, "Beta", b)
	standby.imp(t, "Beta2", b[:5])
	standby.imp(t, "Beta3", b[:5])
	id, err := natsrepl.WriterID(standby.dir)
	if err != nil {
		t.Fatal(err)
	}
	before, after, err := natsrepl.Takeover(t.Context(), o, id, "standby:7355")
	if err != nil {
		t.Fatal(err)
	}
	if before == nil || before.Addr != "old:7355" || after.Epoch != before.Epoch+1 || after.Writer != id {
		t.Fatalf("takeover: before %+v, after %+v", before, after)
	}
	if _, _, err := natsrepl.Takeover(t.Context(), o, id, "standby:7355"); err == nil || !strings.Contains(err.Error(), natsrepl.WriterIDFile) {
		t.Fatalf("a second takeover by the holder: %v, want advice about %s", err, natsrepl.WriterIDFile)
	}
	select {
	case <-old.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the old writer still runs 10s after the takeover")
	}
	var le *natsrepl.LeaseError
	if !errors.As(old.err, &le) || le.Holder.Addr != "standby:7355" {
		t.Fatalf("the old writer's Run = %v, want a lease error naming the standby", old.err)
	}

	// The old writer's late write of current (as if it had checked its
	// lease just before the takeover) is ignored.
	kv, _ := n.buckets()
	e, err := kv.Get(t.Context(), "current")
	if err != nil {
		t.Fatal(err)
	}
	var late map[string]any
	json.Unmarshal(e.Value(), &late)
	late["version"], late["object"] = 7, "delta-late"
	lb, _ := json.Marshal(late)
	if _, err := kv.Put(t.Context(), "current", lb); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late entry ignored", func() bool {
		return strings.Contains(r.logs.String(), "ignoring a corpus entry published by a writer that no longer holds the lease")
	})
	if r.st.Version() != 1 || !ready(r.f) {
		t.Fatalf("after the late entry: version %d, ready %v", r.st.Version(), ready(r.f))
	}

	// The standby publishes its own history: the replica stops rather
	// than mix the two, having answered from the old corpus until then.
	standby.publish(t, o, "standby:7355")
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the replica goes on following across writers' histories")
	}
	var re *natsrepl.ResyncError
	if !errors.As(r.err, &re) || ready(r.f) {
		t.Fatalf("the replica's Run = %v (ready %v), want a resync error", r.err, ready(r.f))
	}
	answers(t, r.st, a[:100], []string{"Alpha"})
	answers(t, r.st, b[:100], nil)
	r.cancel = nil
	r.st.Close()

	// Restarted: Reset empties it; it follows the new writer.
	if did, err := natsrepl.Reset(r.dir, slog.New(slog.DiscardHandler)); err != nil || !did {
		t.Fatalf("Reset = %v, %v", did, err)
	}
	r2 := newReplica(t, r.dir)
	r2.start(o)
	waitFor(t, "the reset replica at the standby's version", func() bool { return ready(r2.f) && r2.st.Version() == 3 })
	answers(t, r2.st, a[:100], nil)
	answers(t, r2.st, b[5:100], []string{"Beta"})
	answers(t, r2.st, b[:5], []string{"Beta", "Beta2", "Beta3"})
}

// TestReadiness: a new replica says it serves only once it holds the
// version current names; without NATS for longer than MaxLag it stops
// saying so (unless ServeStale), and says so again once NATS is back.
func TestReadiness(t *testing.T) {
	t.Parallel()
	n := startSingle(t)
	o := natsrepl.Options{URL: n.url(), Retry: 100 * time.Millisecond, MaxLag: time.Second}
	w := newWriter(t)
	w.publish(t, o, "")
	var all []breachd.Digest
	for i := range 6 {
		ds := storetest.Digests(fmt.Sprint("set", i), 500)
		all = append(all, ds...)
		v := w.imp(t, fmt.Sprint("Breach", i), ds)
		waitFor(t, fmt.Sprintf("version %d published", v), func() bool { return n.current() == v })
	}
	r := newReplica(t, "")
	firstReady := make(chan uint64, 1)
	r.onReady = func() {
		select {
		case firstReady <- r.st.Version():
		default:
		}
	}
	r.start(o)
	var v uint64
	select {
	case v = <-firstReady:
	case <-time.After(60 * time.Second):
		t.Fatal("the replica never served")
	}
	if v != 6 {
		t.Fatalf("the replica first served at version %d, want 6 (the writer's)", v)
	}
	stale := newReplica(t, "")
	so := o
	so.ServeStale = true
	stale.start(so)
	waitFor(t, "the serve-stale replica", func() bool { return ready(stale.f) && stale.st.Version() == 6 })

	n.s.Shutdown()
	waitFor(t, "the replica to say it does not serve", func() bool {
		ok, why := r.f.Ready()
		return !ok && strings.Contains(why, "no answer from NATS")
	})
	if !ready(stale.f) {
		t.Fatal("the serve-stale replica stopped serving")
	}
	answers(t, r.st, all[:50], []string{"Breach0"})
}

// TestBoundedHistory: with a fresh snapshot every few deltas, the bucket
// keeps about two generations, a new replica downloads at most about 1.5×
// a snapshot, and a replica that fell behind the pruned history starts
// again from a snapshot and answers exactly.
func TestBoundedHistory(t *testing.T) {
	t.Parallel()
	n := startSingle(t)
	o := natsrepl.Options{URL: n.url(), Retry: 100 * time.Millisecond, MaxDeltas: 3}
	w := newWriter(t)
	base := storetest.Digests("base", 8000)
	w.imp(t, "Base", base)
	w.publish(t, o, "")
	waitFor(t, "the first snapshot", func() bool { return n.current() == 1 })
	early := newReplica(t, "")
	early.start(o)
	waitFor(t, "the early replica", func() bool { return ready(early.f) && early.st.Version() == 1 })
	early.stop()
	early.cancel = nil
	os.WriteFile(filepath.Join(early.dir, "breachd.follow.123.tmp"), []byte("left by a crash"), 0o600)

	var later []breachd.Digest
	for i := range 12 {
		ds := storetest.Digests(fmt.Sprint("later", i), 400)
		later = append(later, ds...)
		v := w.imp(t, fmt.Sprint("Later", i), ds)
		waitFor(t, fmt.Sprintf("version %d published", v), func() bool { return n.current() == v })
	}
	// A delete too: a replica that resyncs must not keep its rows.
	if _, _, err := w.st.DeleteBreach(t.Context(), "Later0"); err != nil {
		t.Fatal(err)
	}
	w.pub.Kick()
	waitFor(t, "the delete published", func() bool { return n.current() == 14 })

	kv, obs := n.buckets()
	objects, err := obs.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(objects) > 2+2*3+1 {
		var names []string
		for _, oi := range objects {
			names = append(names, oi.Name)
		}
		t.Errorf("%d objects after 14 versions with a snapshot every 3 deltas, want at most two generations: %v", len(objects), names)
	}
	se, err := kv.Get(t.Context(), "snapshot")
	if err != nil {
		t.Fatal(err)
	}
	var snap struct{ Size int64 }
	json.Unmarshal(se.Value(), &snap)

	reg := prometheus.NewRegistry()
	fresh := newReplica(t, "")
	fo := o
	fo.Registerer = reg
	fresh.start(fo)
	waitFor(t, "the new replica", func() bool { return ready(fresh.f) && fresh.st.Version() == 14 })
	got := counter(t, reg, "breachd_replication_applied_bytes_total")
	if got > 1.5*float64(snap.Size) {
		t.Errorf("a new replica downloaded %.0f bytes, more than 1.5× the %d-byte snapshot", got, snap.Size)
	}

	// The early replica's next delta is gone: it stops, is reset, and
	// catches up from the snapshot.
	early.start(o)
	<-early.done
	var re *natsrepl.ResyncError
	if !errors.As(early.err, &re) || !strings.Contains(re.Reason, "pruned") {
		t.Fatalf("the early replica's Run = %v, want a resync for pruned history", early.err)
	}
	if _, err := os.Stat(filepath.Join(early.dir, "breachd.follow.123.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a crash's temporary file survived a restart: %v", err)
	}
	early.st.Close()
	if did, err := natsrepl.Reset(early.dir, slog.New(slog.DiscardHandler)); err != nil || !did {
		t.Fatalf("Reset = %v, %v", did, err)
	}
	again := newReplica(t, early.dir)
	again.start(o)
	waitFor(t, "the reset replica", func() bool { return ready(again.f) && again.st.Version() == 14 })
	for _, r := range []*replica{fresh, again} {
		answers(t, r.st, base[:200], []string{"Base"})
		answers(t, r.st, later[:400], nil) // Later0, deleted
		answers(t, r.st, later[400:600], []string{"Later1"})
		answers(t, r.st, later[4400:4600], []string{"Later11"})
	}
}

// counter is the value of the registered counter named name.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestLostPublishRecord: a writer that named an entry current but lost its
// record of it (stopped in between, or the answer to the put was lost when
// a NATS node died) takes the entry as its own: the next change is a delta
// of the same lineage, and replicas follow it without starting again. It
// started a new lineage before, and every replica resynchronised (found by
// make replica-chaos).
func TestLostPublishRecord(t *testing.T) {
	t.Parallel()
	n := startSingle(t)
	w := newWriter(t)
	o := natsrepl.Options{URL: n.url(), Retry: 50 * time.Millisecond}
	w.imp(t, "Alpha", storetest.Digests("a", 300))
	w.publish(t, o, "writer:7355")
	waitFor(t, "version 1 published", func() bool { return n.current() == 1 })
	r := newReplica(t, "")
	r.start(natsrepl.Options{URL: n.url(), Retry: 50 * time.Millisecond})
	waitFor(t, "the replica at version 1", func() bool { return r.st.Version() == 1 })

	// Publish version 2, then put back the record of version 1, as if
	// the writer had stopped between naming 2 current and recording it.
	record := filepath.Join(w.dir, natsrepl.PublishedFile)
	before, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	w.cancel()
	<-w.done
	w.imp(t, "Beta", storetest.Digests("b", 300))
	w.publish(t, o, "writer:7355")
	waitFor(t, "version 2 published", func() bool { return n.current() == 2 })
	w.cancel()
	<-w.done
	if err := os.WriteFile(record, before, 0o600); err != nil {
		t.Fatal(err)
	}
	w.imp(t, "Gamma", storetest.Digests("c", 300))
	w.publish(t, o, "writer:7355")
	waitFor(t, "the replica at version 3", func() bool { return r.st.Version() == 3 })
	if strings.Contains(r.logs.String(), "start again") || r.err != nil {
		t.Fatalf("the replica had to start again (%v):\n%s", r.err, r.logs.String())
	}
	answers(t, r.st, storetest.Digests("b", 300), []string{"Beta"})
	answers(t, r.st, storetest.Digests("c", 300), []string{"Gamma"})
}

// slowTarget is a replica's corpus whose ApplyBackup waits until released:
// a catch-up stuck on a slow download or apply.
type slowTarget struct {
	*store.Store
	mu   sync.Mutex
	hold chan struct{}
}

func (s *slowTarget) ApplyBackup(ctx context.Context, r io.Reader, keys uint64) (uint64, error) {
	s.mu.Lock()
	hold := s.hold
	s.mu.Unlock()
	select {
	case <-hold:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return s.Store.ApplyBackup(ctx, r, keys)
}

// startSlowReplica starts a single NATS server, a writer that has
// published version 1, and a follower of it whose applies wait on hold
// (slowTarget), and waits for the follower to serve version 1. The
// follower stops, and its log is shown if the test failed, at cleanup.
func startSlowReplica(t *testing.T, hold chan struct{}) (*single, natsrepl.Options, *writer, *replica, *slowTarget, *natsrepl.Follower) {
	n := startSingle(t)
	o := natsrepl.Options{URL: n.url(), Retry: 100 * time.Millisecond, MaxLag: 500 * time.Millisecond}
	w := newWriter(t)
	w.publish(t, o, "")
	w.imp(t, "First", storetest.Digests("first", 100))
	waitFor(t, "version 1 published", func() bool { return n.current() == 1 })
	r := newReplica(t, "")
	slow := &slowTarget{Store: r.st, hold: hold}
	var logs logtest.Buffer
	fo := o
	fo.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	f := natsrepl.NewFollower(slow, r.dir, fo)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("follower log:\n%s", logs.String())
		}
	})
	waitFor(t, "the replica serving version 1", func() bool { ok, _ := f.Ready(); return ok && r.st.Version() == 1 })
	return n, o, w, r, slow, f
}

// TestLearnsWhileCatchingUp: a replica learns of a newer version while a
// catch-up runs, and its lag clock runs from then: having applied the
// older version, it does not say it serves while the newer one, published
// more than max_lag before, is still to come. (Its loop learnt of newer
// versions only between catch-ups, and started the clock then: the chaos
// harness saw a replica SERVING 3.2 s after a newer version was published,
// at a max_lag of 2 s.)
func TestLearnsWhileCatchingUp(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{}, 1)
	hold <- struct{}{} // the first version applies at once; each later one waits for a token
	n, o, w, r, _, f := startSlowReplica(t, hold)

	w.imp(t, "Second", storetest.Digests("second", 100))
	waitFor(t, "version 2 published", func() bool { return n.current() == 2 })
	w.imp(t, "Third", storetest.Digests("third", 100))
	waitFor(t, "version 3 published", func() bool { return n.current() == 3 })
	time.Sleep(2 * o.MaxLag) // version 2's catch-up still waits
	hold <- struct{}{}       // version 2 applies; version 3 will wait
	waitFor(t, "version 2 applied", func() bool { return r.st.Version() == 2 })
	for end := time.Now().Add(o.MaxLag); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if ok, _ := f.Ready(); ok && r.st.Version() == 2 {
			t.Fatalf("the replica says it serves at version 2, %s after version 3 was published (max_lag %s)", 2*o.MaxLag, o.MaxLag)
		}
	}
	close(hold)
	waitFor(t, "the replica serving version 3", func() bool { ok, _ := f.Ready(); return ok && r.st.Version() == 3 })
}

// TestStuckCatchUp: a replica whose catch-up is stuck stops saying it
// serves once it has been behind for max_lag, during the catch-up, not
// after it (the chaos harness saw replicas SERVING 5 s past max_lag).
func TestStuckCatchUp(t *testing.T) {
	t.Parallel()
	free := make(chan struct{})
	close(free) // the first version applies at once
	_, _, w, r, slow, f := startSlowReplica(t, free)

	hold := make(chan struct{})
	slow.mu.Lock()
	slow.hold = hold // the next apply hangs
	slow.mu.Unlock()
	w.imp(t, "Second", storetest.Digests("second", 100))
	waitFor(t, "the replica to stop serving while its catch-up is stuck", func() bool {
		ok, why := f.Ready()
		return !ok && strings.Contains(why, "versions behind the writer")
	})
	close(hold)
	waitFor(t, "the replica serving again at version 2", func() bool { ok, _ := f.Ready(); return ok && r.st.Version() == 2 })
}
