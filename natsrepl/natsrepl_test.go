package natsrepl_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/internal/porttest"
	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// cluster starts a real three-node JetStream cluster on loopback. A
// JetStream cluster node needs its routes configured, so the kernel cannot
// choose its cluster port: the ports are reserved below the ephemeral range
// (porttest), and should one still be taken before its node binds it, the
// cluster is started again on other ports, up to three times.
func cluster(t *testing.T) ([]*server.Server, string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		servers, err := startCluster(t)
		if err == nil {
			var urls []string
			for _, s := range servers {
				urls = append(urls, s.ClientURL())
			}
			url := strings.Join(urls, ",")
			waitLeader(t, url)
			return servers, url
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("starting the NATS cluster again: %v", err)
	}
}

// startCluster starts the three nodes on reserved ports and waits for them;
// on failure it shuts down what it started.
func startCluster(t *testing.T) ([]*server.Server, error) {
	ports := make([]int, 3)
	for i := range ports {
		p, err := porttest.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var servers []*server.Server
	shutdown := func() {
		for _, s := range servers {
			s.Shutdown()
		}
	}
	for i, p := range ports {
		o := &server.Options{ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1, JetStream: true,
			StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "breachd-test", Host: "127.0.0.1", Port: p},
			Routes:  server.RoutesFromStr(strings.Join(routes, ","))}
		s, err := server.NewServer(o)
		if err != nil {
			shutdown()
			return nil, err
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		servers = append(servers, s)
	}
	for i, s := range servers {
		if !s.ReadyForConnections(20 * time.Second) {
			shutdown()
			return nil, fmt.Errorf("NATS node %d did not start", i+1)
		}
	}
	return servers, nil
}

// storeOptions are the corpora's options in these tests: test-sized
// memtables (the default's 64 MiB arenas are most of a store's start under
// the race detector) and scans unpaced.
func storeOptions() store.Options {
	o := store.DefaultOptions()
	o.MemTableSize, o.BackgroundShare = 4<<20, 1
	return o
}

// waitLeader waits for the JetStream meta group at url to elect a leader.
func waitLeader(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	waitFor(t, "a JetStream leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type replica struct {
	st     *store.Store
	dir    string
	f      *natsrepl.Follower
	cancel context.CancelFunc
	done   chan struct{}
	err    error // what Run returned, once done is closed
	logs   *logtest.Buffer
	// onReady, if set, is the follower's OnReady.
	onReady func()
}

func (r *replica) start(o natsrepl.Options) {
	ctx, cancel := context.WithCancel(context.Background())
	r.logs = &logtest.Buffer{}
	o.Logger = slog.New(slog.NewTextHandler(r.logs, nil))
	r.f = natsrepl.NewFollower(r.st, r.dir, o)
	r.f.OnReady = r.onReady
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		r.err = r.f.Run(ctx)
	}()
}

func (r *replica) stop() {
	r.cancel()
	<-r.done
}

func lookupNames(t *testing.T, st *store.Store, d breachd.Digest) []string {
	t.Helper()
	bs, _, err := st.Lookup(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

// TestReplicas runs a writer and two replicas on a three-node JetStream
// cluster: the replicas serve the writer's corpus after a snapshot; an
// import on the writer reaches both with its new version; a NATS node
// killed stops neither publishing nor following; replicas stopped and
// restarted catch up with deltas, not a new download; a corrupted object is
// rejected while the replicas keep serving, and applied once it is right;
// with the writer gone, the replicas serve the last version.
func TestReplicas(t *testing.T) {
	t.Parallel()
	servers, url := cluster(t)
	ctx := context.Background()
	o := natsrepl.Options{URL: url, Replicas: 3, Retry: 200 * time.Millisecond}

	wdir := t.TempDir()
	w, err := store.Open(ctx, wdir, storeOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a, b, c, d := storetest.Digests("a", 5000), storetest.Digests("b", 3000), storetest.Digests("c", 2000), storetest.Digests("d", 1000)
	imp := func(name string, ds []breachd.Digest) {
		t.Helper()
		if _, err := w.Import(ctx, storetest.Breach(name), storetest.Batches(ds, 1000, nil)); err != nil {
			t.Fatal(err)
		}
	}
	imp("Alpha", a)
	pctx, stopPub := context.WithCancel(ctx)
	pub := natsrepl.NewPublisher(w, wdir, "writer.internal:7355", o)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); pub.Run(pctx) }()
	defer func() { stopPub(); <-pubDone }()

	fo := storeOptions()
	fo.Follower = true
	var rs []*replica
	for i := range 2 {
		r := &replica{dir: t.TempDir()}
		t.Cleanup(func() {
			if t.Failed() && r.logs != nil {
				t.Logf("replica %d's log since its last start:\n%s", i, r.logs.String())
			}
		})
		if r.st, err = store.Open(ctx, r.dir, fo); err != nil {
			t.Fatal(err)
		}
		defer r.st.Close()
		r.start(o)
		defer r.stop()
		rs = append(rs, r)
	}
	atVersion := func(what string, v uint64) {
		t.Helper()
		for i, r := range rs {
			waitFor(t, fmt.Sprintf("replica %d at version %d (%s)", i, v, what), func() bool { return r.st.Version() == v && ready(r.f) })
		}
	}
	atVersion("the snapshot", 1)
	for _, r := range rs {
		if got := lookupNames(t, r.st, a[0]); !slices.Equal(got, []string{"Alpha"}) {
			t.Fatalf("replica answers %v for an Alpha account", got)
		}
		if r.f.Writer() != "writer.internal:7355" {
			t.Errorf("replica knows the writer as %q", r.f.Writer())
		}
	}

	imp("Beta", b)
	pub.Kick()
	atVersion("an import", 2)
	for _, r := range rs {
		if got := lookupNames(t, r.st, b[0]); !slices.Equal(got, []string{"Beta"}) {
			t.Fatalf("replica answers %v for a Beta account", got)
		}
	}

	// A NATS node dies: publishing and following go on.
	servers[0].Shutdown()
	imp("Gamma", c)
	pub.Kick()
	atVersion("an import with a NATS node down", 3)

	// Replicas stopped; the writer publishes; the object is corrupted
	// before they fetch it. Restarted, they reject it and keep serving
	// version 3; once the object is right again they apply it: a delta,
	// not a new snapshot.
	for _, r := range rs {
		r.stop()
	}
	imp("Delta", d)
	pub.Kick()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, _ := js.KeyValue(ctx, natsrepl.DefaultKVBucket)
	obs, _ := js.ObjectStore(ctx, natsrepl.DefaultObjectBucket)
	var object string
	waitFor(t, "the delta of version 4", func() bool {
		e, err := kv.Get(ctx, "current")
		if err != nil || !strings.Contains(string(e.Value()), `"version":4,`) {
			return false
		}
		object = strings.Split(strings.Split(string(e.Value()), `"object":"`)[1], `"`)[0]
		return true
	})
	good, err := obs.GetBytes(ctx, object)
	if err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(good)
	bad[len(bad)/2] ^= 0xff
	if _, err := obs.PutBytes(ctx, object, bad); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		r.start(o)
	}
	for i, r := range rs {
		waitFor(t, fmt.Sprintf("replica %d to reject the corrupted object", i), func() bool {
			return strings.Contains(r.logs.String(), "checksum mismatch")
		})
		if r.st.Version() != 3 || !slices.Equal(lookupNames(t, r.st, c[0]), []string{"Gamma"}) {
			t.Fatalf("replica %d after a corrupted object: version %d", i, r.st.Version())
		}
	}
	if _, err := obs.PutBytes(ctx, object, good); err != nil {
		t.Fatal(err)
	}
	atVersion("the repaired delta", 4)
	for i, r := range rs {
		if strings.Contains(r.logs.String(), "kind=snapshot") {
			t.Errorf("replica %d downloaded a snapshot again after a restart:\n%s", i, r.logs.String())
		}
		if got := lookupNames(t, r.st, d[0]); !slices.Equal(got, []string{"Delta"}) {
			t.Fatalf("replica %d answers %v for a Delta account", i, got)
		}
	}

	// The writer goes away: the replicas serve version 4.
	stopPub()
	<-pubDone
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	for _, r := range rs {
		if r.st.Version() != 4 || !slices.Equal(lookupNames(t, r.st, a[1]), []string{"Alpha"}) {
			t.Fatalf("replica with the writer gone: version %d", r.st.Version())
		}
	}
}

// TestFollowChild is the replica process that TestReplicaKilled kills: it
// follows until it is killed. It does nothing unless run as that child.
func TestFollowChild(t *testing.T) {
	dir, url := os.Getenv("BREACHD_FOLLOW_DIR"), os.Getenv("BREACHD_FOLLOW_URL")
	if dir == "" {
		t.Skip("run by TestReplicaKilled as its child process")
	}
	fo := storeOptions()
	fo.Follower = true
	st, err := store.Open(context.Background(), dir, fo)
	if err != nil {
		t.Fatal(err)
	}
	natsrepl.NewFollower(st, dir, natsrepl.Options{URL: url, Retry: 100 * time.Millisecond}).Run(context.Background())
}

// TestReplicaKilled kills a replica process with SIGKILL at random moments
// of its first download and of a later delta, again and again, then starts
// it once more: it catches up, and answers exactly as the writer does.
func TestReplicaKilled(t *testing.T) {
	_, url := cluster(t)
	ctx := context.Background()
	wdir := t.TempDir()
	w, err := store.Open(ctx, wdir, storeOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a, b := storetest.Digests("a", 100_000), storetest.Digests("b", 20_000)
	if _, err := w.Import(ctx, storetest.Breach("Alpha"), storetest.Batches(a, 10_000, nil)); err != nil {
		t.Fatal(err)
	}
	pctx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	pub := natsrepl.NewPublisher(w, wdir, "", natsrepl.Options{URL: url, Replicas: 3})
	go pub.Run(pctx)

	rdir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kill := func(round int) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFollowChild$")
		cmd.Env = append(os.Environ(), "BREACHD_FOLLOW_DIR="+rdir, "BREACHD_FOLLOW_URL="+url)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+rng.IntN(900)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		promoteCopy(t, rdir, round, a, b)
	}
	for i := range 3 {
		kill(i)
	}
	if _, err := w.Import(ctx, storetest.Breach("Beta"), storetest.Batches(append(b, a[:1000]...), 10_000, nil)); err != nil {
		t.Fatal(err)
	}
	pub.Kick()
	for i := range 2 {
		kill(3 + i)
	}

	fo := storeOptions()
	fo.Follower = true
	r := &replica{dir: rdir}
	if r.st, err = store.Open(ctx, rdir, fo); err != nil {
		t.Fatal(err)
	}
	defer r.st.Close()
	r.start(natsrepl.Options{URL: url, Retry: 100 * time.Millisecond})
	defer r.stop()
	waitFor(t, "the killed replica to catch up", func() bool { return ready(r.f) && r.st.Version() == 2 })
	for _, d := range a[:1000] {
		if got := lookupNames(t, r.st, d); !slices.Equal(got, []string{"Alpha", "Beta"}) {
			t.Fatalf("an account of both breaches: %v", got)
		}
	}
	for _, ds := range []struct {
		ds   []breachd.Digest
		want []string
	}{{a[1000:], []string{"Alpha"}}, {b, []string{"Beta"}}, {storetest.Digests("outsider", 10_000), nil}} {
		for _, d := range ds.ds {
			if got := lookupNames(t, r.st, d); !slices.Equal(got, ds.want) {
				t.Fatalf("after the kills: %v, want %v", got, ds.want)
			}
		}
	}
}

// TestUnreadableCurrent: a current entry that is not an entry (a bucket
// written by something else) is logged and skipped while the replica keeps
// serving what it has; the next good entry is applied.
func TestUnreadableCurrent(t *testing.T) {
	t.Parallel()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatal("NATS did not start")
	}
	ctx := t.Context()
	o := natsrepl.Options{URL: s.ClientURL(), Retry: 100 * time.Millisecond, MaxLag: time.Second}
	w, err := store.Open(ctx, t.TempDir(), storeOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a := storetest.Digests("a", 500)
	if _, err := w.Import(ctx, storetest.Breach("Alpha"), storetest.Batches(a, 500, nil)); err != nil {
		t.Fatal(err)
	}
	// The buckets exist once a publisher has connected: publish, then spoil
	// current before the replica starts.
	pctx, stopPub := context.WithCancel(ctx)
	pub := natsrepl.NewPublisher(w, t.TempDir(), "", o)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); pub.Run(pctx) }()
	defer func() { stopPub(); <-pubDone }()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var kv jetstream.KeyValue
	var good jetstream.KeyValueEntry
	waitFor(t, "the first publish", func() bool {
		if kv == nil {
			kv, _ = js.KeyValue(ctx, natsrepl.DefaultKVBucket)
		}
		if kv != nil {
			good, _ = kv.Get(ctx, "current")
		}
		return good != nil
	})
	if _, err := kv.Put(ctx, "current", []byte("not an entry")); err != nil {
		t.Fatal(err)
	}
	fo := storeOptions()
	fo.Follower = true
	r := &replica{dir: t.TempDir()}
	if r.st, err = store.Open(ctx, r.dir, fo); err != nil {
		t.Fatal(err)
	}
	defer r.st.Close()
	r.start(o)
	defer r.stop()
	waitFor(t, "the unreadable entry to be logged", func() bool {
		return strings.Contains(r.logs.String(), "the current corpus entry is unreadable")
	})
	if ready(r.f) || r.st.Version() != 0 {
		t.Fatalf("after an unreadable current: ready %v at version %d, want neither", ready(r.f), r.st.Version())
	}
	if _, err := kv.Put(ctx, "current", good.Value()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the good entry to be applied", func() bool { return ready(r.f) && r.st.Version() == 1 })
	if got := lookupNames(t, r.st, a[0]); !slices.Equal(got, []string{"Alpha"}) {
		t.Fatalf("replica answers %v for an Alpha account", got)
	}
	// Spoilt again while the replica serves: it cannot tell whether it is
	// current, so past max_lag it stops serving, and says why.
	if _, err := kv.Put(ctx, "current", []byte("not an entry")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica to stop serving, naming the unreadable entry", func() bool {
		ok, why := r.f.Ready()
		return !ok && strings.Contains(why, "unreadable")
	})
	if _, err := kv.Put(ctx, "current", good.Value()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica serving again", func() bool { return ready(r.f) && r.st.Version() == 1 })
}

func ready(f *natsrepl.Follower) bool {
	ok, _ := f.Ready()
	return ok
}

// TestReadBack damages an object the way a stream leader killed mid-put
// can (a chunk stored twice), and the way a bad copy does (a byte
// changed): the publisher's read-back, which is the follower's check,
// rejects both, saying which object.
func TestReadBack(t *testing.T) {
	url := startSingle(t).url()
	ctx := context.Background()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	o := natsrepl.Options{URL: url}
	obs, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: natsrepl.DefaultObjectBucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: natsrepl.DefaultKVBucket}); err != nil {
		t.Fatal(err)
	}
	good := make([]byte, 300<<10) // three chunks
	for i := range good {
		good[i] = byte(rand.IntN(256))
	}
	info, err := obs.PutBytes(ctx, "delta-x", good)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsrepl.ReadBack(ctx, o, "delta-x", good); err != nil {
		t.Fatalf("an intact object: %v", err)
	}
	// A chunk stored twice: JetStream's digest no longer matches.
	if _, err := js.Publish(ctx, "$O."+natsrepl.DefaultObjectBucket+".C."+info.NUID, good[:128<<10]); err != nil {
		t.Fatal(err)
	}
	if err := natsrepl.ReadBack(ctx, o, "delta-x", good); err == nil || !strings.Contains(err.Error(), "delta-x") {
		t.Fatalf("a chunk stored twice: %v", err)
	}
	// The object put again whole, but not what the entry says.
	bad := slices.Clone(good)
	bad[len(bad)/2] ^= 1
	if _, err := obs.PutBytes(ctx, "delta-x", bad); err != nil {
		t.Fatal(err)
	}
	if err := natsrepl.ReadBack(ctx, o, "delta-x", good); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("a changed byte: %v", err)
	}
	if _, err := obs.PutBytes(ctx, "delta-x", good); err != nil {
		t.Fatal(err)
	}
	if err := natsrepl.ReadBack(ctx, o, "delta-x", good); err != nil {
		t.Fatalf("put again whole: %v", err)
	}
}

// promoteCopy checks what 'breachd replication promote' would make of a
// killed replica's directory: a copy, if promotable, opens as a writer's
// corpus at a whole version (Alpha's accounts; and, from version 2,
// Beta's), and an import into it answers its own accounts alone, never
// rows of a backup the replica was applying when killed (a directory
// holding them is refused).
func promoteCopy(t *testing.T, rdir string, round int, a, b []breachd.Digest) {
	t.Helper()
	if !natsrepl.Follows(rdir) {
		t.Logf("killed replica %d: killed before it recorded anything: nothing to promote", round)
		return
	}
	if err := natsrepl.CanPromote(rdir); err != nil {
		t.Logf("killed replica %d: not promotable: %v", round, err)
		return
	}
	dir := filepath.Join(t.TempDir(), "promoted")
	if err := os.CopyFS(dir, os.DirFS(rdir)); err != nil {
		t.Fatal(err)
	}
	if did, err := natsrepl.Promote(dir); err != nil || !did {
		t.Fatalf("killed replica %d: Promote = %v, %v", round, did, err)
	}
	st, err := store.Open(t.Context(), dir, storeOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v := st.Version()
	probe := storetest.Digests(fmt.Sprintf("probe%d", round), 500)
	if _, err := st.Import(t.Context(), storetest.Breach("Probe"), storetest.Batches(probe, 500, nil)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(a); i += 97 {
		w := []string{"Alpha"}
		if v >= 2 && i < 1000 {
			w = []string{"Alpha", "Beta"}
		}
		if got := lookupNames(t, st, a[i]); !slices.Equal(got, w) {
			t.Fatalf("killed replica %d promoted at version %d: account %d of Alpha answers %v, want %v", round, v, i, got, w)
		}
	}
	for i := 0; i < len(b); i += 13 {
		var w []string
		if v >= 2 {
			w = []string{"Beta"}
		}
		if got := lookupNames(t, st, b[i]); !slices.Equal(got, w) {
			t.Fatalf("killed replica %d promoted at version %d: account %d of Beta answers %v, want %v", round, v, i, got, w)
		}
	}
	for _, d := range probe {
		if got := lookupNames(t, st, d); !slices.Equal(got, []string{"Probe"}) {
			t.Fatalf("killed replica %d promoted at version %d: a new import's account answers %v", round, v, got)
		}
	}
	t.Logf("killed replica %d: promoted at version %d, exact", round, v)
}
