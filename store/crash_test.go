package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/daemon/daemontest"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// The crash harness. Each run's directory is a data directory (its email
// corpus in store.EmailDir), as a daemon serves it. TestCrash runs the work
// below in a child process (this
// test binary, re-executed), kills it with SIGKILL at a random moment, and
// checks what a restart finds: the store opens; every breach is fully
// visible or fully invisible; and after the work is done again, answers are
// exact (no false negative, no false positive) on samples of every breach
// and of outsiders. BREACHD_CRASH_RUNS sets the number of kills (CI runs a
// few; 'make crash-test' runs 100).

// Corpus sizes: small for the short version in make test (which runs with
// the race detector), BREACHD_CRASH_LARGE=150000 in make crash-test.
var (
	crashBase  = 10_000 // committed before every run
	crashLarge = 30_000 // the breach an interrupted run imports
)

func init() {
	if n, err := strconv.Atoi(os.Getenv("BREACHD_CRASH_LARGE")); err == nil && n > 0 {
		crashLarge, crashBase = n, n/5
	}
}

// The operations a run kills. online-import is a serving daemon (the real
// gRPC server) taking an import from client.Import; filter-save is a later
// import whose process kills itself inside the filter's whole save, at one
// of crashPoints (a kill from outside rarely lands there), and filter-log
// one that kills itself inside its record in the filter's log, or after
// it, before the commit (logPoints).
// delete-import is a delete killed at a row of its collection (or of the
// collection at open before it), after which another breach is imported
// at once: none of the deleted breach's accounts may answer under it.
var crashOps = []string{"first-import", "later-import", "delete", "collect", "online-import", "filter-save", "filter-log", "delete-import"}

var (
	crashPoints = []string{"filter-written", "filter-renamed"}
	logPoints   = []string{"filter-log-torn", "filter-logged"}
)

// crashWindow is the range of kill times per operation: about as long as
// the child takes (it starts, opens the store, works), so that most kills
// land mid-work.
var crashWindow = map[string]time.Duration{
	"first-import": 1200 * time.Millisecond, "later-import": 2000 * time.Millisecond,
	"delete": 700 * time.Millisecond, "collect": 500 * time.Millisecond,
	"online-import": 800 * time.Millisecond, // from the start of the import, not of the process
}

type crashTally struct{ kills, finished, loaded, rebuilt int }

func crashDigests(name string) []breachd.Digest {
	switch name {
	case "Base":
		return storetest.Digests("base", crashBase)
	case "Outsiders":
		return storetest.Digests("outsider", 2000)
	case "Next":
		return storetest.Digests("next", 5000)
	}
	// Large shares its first 1,000 accounts with Base.
	return append(storetest.Digests("base", 1000), storetest.Digests("large", crashLarge)...)
}

// crashWork is what a run does, in the child, or again after the kill.
func crashWork(ctx context.Context, s *store.Store, op string) error {
	switch op {
	case "first-import", "later-import", "online-import", "filter-save", "filter-log":
		_, err := s.Import(ctx, storetest.Breach("Large"), storetest.Batches(crashDigests("Large"), 5000, nil))
		return err
	case "delete", "delete-import":
		_, _, err := s.DeleteBreach(ctx, "Large")
		if errors.Is(err, breachd.ErrNotFound) {
			return nil // the killed run got there first
		}
		return err
	case "abandon": // the templates' interrupted import, killed at its second batch
		_, err := s.Import(ctx, storetest.Breach("Gone"), storetest.Batches(storetest.Digests("gone", 20000), 5000, nil))
		return err
	case "collect":
		_, err := s.Collect(ctx)
		return err
	}
	return fmt.Errorf("unknown op %q", op)
}

// TestCrashChild is the child's side; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir, op := os.Getenv("BREACHD_CRASH_DIR"), os.Getenv("BREACHD_CRASH_OP")
	if dir == "" {
		t.Skip("the crash harness's child process")
	}
	if strings.HasPrefix(op, "password-") {
		if point, n, ok := strings.Cut(os.Getenv("BREACHD_CRASH_POINT"), ":"); ok {
			nth, _ := strconv.Atoi(n)
			crashAt(point, nth)
		}
		o := options(0)
		o.Index = store.IndexInline // a later release's index is rebuilt before Import returns
		p, err := store.OpenPasswords(context.Background(), store.PasswordDir(dir, breachd.SHA1), breachd.SHA1, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := crashPasswordWork(context.Background(), p, op); err != nil {
			t.Fatal(err)
		}
		p.Close()
		return
	}
	if op == "replica-snapshot" {
		if point, n, ok := strings.Cut(os.Getenv("BREACHD_CRASH_POINT"), ":"); ok {
			nth, _ := strconv.Atoi(n)
			crashAt(point, nth)
		}
		o := options(0)
		o.Follower = true
		r, err := store.OpenPasswords(context.Background(), dir, breachd.SHA1, o)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(os.Getenv("BREACHD_CRASH_SNAPSHOT"))
		if err != nil {
			t.Fatal(err)
		}
		keys, _ := strconv.ParseUint(os.Getenv("BREACHD_CRASH_KEYS"), 10, 64)
		if _, err := r.ApplyBackup(context.Background(), f, keys); err != nil {
			t.Fatal(err)
		}
		r.Close()
		return
	}
	if op == "rekey" {
		if point, n, ok := strings.Cut(os.Getenv("BREACHD_CRASH_POINT"), ":"); ok {
			nth, _ := strconv.Atoi(n)
			crashAt(point, nth)
		}
		key, err := store.ReadIndexKey(os.Getenv("BREACHD_CRASH_KEY"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Rekey(context.Background(), dir, key, options(0)); err != nil {
			t.Fatal(err)
		}
		return
	}
	if op == "reconcile-added" || op == "reconcile-removed" {
		if point, n, ok := strings.Cut(os.Getenv("BREACHD_CRASH_POINT"), ":"); ok {
			nth, _ := strconv.Atoi(n)
			crashAt(point, nth)
		}
		_, w, done := openWatchWorld(t, dir)
		if err := crashWatchWork(context.Background(), w); err != nil {
			t.Fatal(err)
		}
		done()
		return
	}
	if op == "delta" {
		if point, n, ok := strings.Cut(os.Getenv("BREACHD_CRASH_POINT"), ":"); ok {
			nth, _ := strconv.Atoi(n)
			crashAt(point, nth)
		}
		if err := crashDeltaWork(context.Background(), dir); err != nil {
			t.Fatal(err)
		}
		return
	}
	if op == "pair-import" || op == "pair-delete" {
		if point, n, ok := strings.Cut(os.Getenv("BREACHD_CRASH_POINT"), ":"); ok {
			nth, _ := strconv.Atoi(n)
			crashAt(point, nth)
		}
		svc, done := openPairService(t, dir)
		if err := crashPairWork(context.Background(), svc, op); err != nil {
			t.Fatal(err)
		}
		done()
		return
	}
	switch op {
	case "online-import":
		// Serve over real gRPC, tell the parent where, and wait for its
		// import and its kill.
		o := crashOptions(t)
		srv := daemontest.Start(t, dir, func(c *daemon.Config) { c.Emails = o }, nil)
		if err := os.WriteFile(dir+".addr", []byte("unix://"+srv.AdminSocket()), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		t.Fatal("not killed within a minute")
	case "filter-save", "filter-log", "delete-import", "abandon":
		// BREACHD_CRASH_POINT is a point's name, or name:N for its Nth reach.
		point, nth := os.Getenv("BREACHD_CRASH_POINT"), 1
		if name, n, ok := strings.Cut(point, ":"); ok {
			var err error
			if nth, err = strconv.Atoi(n); err != nil {
				t.Fatalf("BREACHD_CRASH_POINT=%q: %v", point, err)
			}
			point = name
		}
		crashAt(point, nth)
	}
	o := crashOptions(t)
	switch op {
	case "filter-save":
		o = store.WithFilterLog(o, -1) // saved whole
	case "filter-log":
		o = store.WithFilterLog(o, 1<<30) // logged
	}
	s, err := store.Open(context.Background(), store.EmailDir(dir), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := crashWork(context.Background(), s, op); err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// crashAt makes this process kill itself at the nth reach of a crash point.
func crashAt(point string, nth int) {
	var reached atomic.Int64
	store.SetCrashPoint(func(name string) {
		if name == point && reached.Add(1) == int64(nth) {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	})
}

// crashRuns is BREACHD_CRASH_RUNS, or def (one of each operation).
func crashRuns(t *testing.T, def int) int {
	if s := os.Getenv("BREACHD_CRASH_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("BREACHD_CRASH_RUNS: %v", err)
		}
		return n
	}
	return def
}

func TestCrash(t *testing.T) { crashTest(t, crashRuns(t, len(crashOps))) }

// TestCrashPrivate is TestCrash over a keyed, private corpus: each import
// writes its private rows too, and after every kill private checks answer
// as plain ones do. make test runs the first four operations, over two thirds
// of TestCrash's accounts (an OPRF evaluation each); make crash-test's
// BREACHD_CRASH_LARGE applies as to TestCrash.
func TestCrashPrivate(t *testing.T) {
	key := filepath.Join(t.TempDir(), "index.key")
	if _, err := store.GenerateIndexKey(key); err != nil {
		t.Fatal(err)
	}
	t.Setenv(crashPrivateKey, key) // the children's too
	if os.Getenv("BREACHD_CRASH_LARGE") == "" {
		t.Setenv("BREACHD_CRASH_LARGE", "20000") // the children read it at start
		large, base := crashLarge, crashBase
		crashLarge, crashBase = 20_000, 4_000 // as init reads it
		t.Cleanup(func() { crashLarge, crashBase = large, base })
	}
	crashTest(t, crashRuns(t, 4))
}

// crashPrivateKey names the environment variable of TestCrashPrivate's
// key file.
const crashPrivateKey = "BREACHD_CRASH_PRIVATE_KEY"

// crashOptions are the options of the harness's email corpora: keyed and
// private under TestCrashPrivate.
func crashOptions(t *testing.T) store.Options {
	o := options(0)
	if f := os.Getenv(crashPrivateKey); f != "" {
		key, err := store.ReadIndexKey(f)
		if err != nil {
			t.Fatal(err)
		}
		o.IndexKey, o.Private = key, true
	}
	return o
}

func crashTest(t *testing.T, runs int) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	root := t.TempDir()
	// Templates: a corpus with Base committed, and one with Base and Large
	// (for delete and collect), each made once and copied for every run.
	templates := map[string]string{}
	for _, tc := range []struct {
		name     string
		breaches []string
		pending  bool // an interrupted import left rows to collect
	}{{"base", []string{"Base"}, false}, {"both", []string{"Base", "Large"}, true}} {
		dir := filepath.Join(root, "template-"+tc.name)
		s := open(t, store.EmailDir(dir), crashOptions(t))
		for _, b := range tc.breaches {
			importAll(t, s, storetest.Breach(b), crashDigests(b), 5000)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if tc.pending {
			// A running store collects an import its caller abandons; a
			// killed one leaves it for the next open.
			cmd := crashChild(dir, "abandon", "import-batch:2")
			if err := cmd.Run(); !killed(err) {
				t.Fatalf("the abandoning child: %v, want killed", err)
			}
		}
		templates[tc.name] = dir
	}
	// Rows the collections read in the template with both breaches, and so
	// the range of a delete-import's kill points: the one at open reads
	// what changed since the abandoned import began (its two batches),
	// then the delete's reads every row.
	collectRows := 10_000 + crashBase + crashLarge - 1000
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	tally := map[string]*crashTally{}
	for _, op := range crashOps {
		tally[op] = &crashTally{}
	}
	var slowest time.Duration
	for run := range runs {
		op := crashOps[run%len(crashOps)]
		dir := filepath.Join(root, fmt.Sprintf("run-%d", run))
		switch op {
		case "first-import":
			// an empty store
		case "later-import", "online-import", "filter-save", "filter-log":
			copyDir(t, templates["base"], dir)
		default:
			copyDir(t, templates["both"], dir)
		}
		point := crashPoints[r.IntN(len(crashPoints))]
		if op == "filter-log" {
			point = logPoints[r.IntN(len(logPoints))]
		}
		if op == "delete-import" {
			point = fmt.Sprintf("collect-row:%d", 1+r.IntN(collectRows))
		}
		cmd := crashChild(dir, op, point)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		switch op {
		case "online-import":
			if onlineImportKilled(t, dir, done, cmd.Process, time.Duration(r.Int64N(int64(crashWindow[op])))) {
				tally[op].kills++
			} else {
				tally[op].finished++
			}
		case "filter-save", "filter-log":
			if err := <-done; !killed(err) {
				t.Fatalf("run %d (%s): the child did not die at %s: %v", run, op, point, err)
			}
			tally[op].kills++
		case "delete-import":
			if err := <-done; killed(err) {
				tally[op].kills++
			} else if err != nil {
				t.Fatalf("run %d (%s): child failed: %v", run, op, err)
			} else {
				tally[op].finished++ // the collections ended before the point
			}
		default:
			select {
			case err := <-done: // finished before the kill
				if err != nil {
					t.Fatalf("run %d (%s): child failed: %v", run, op, err)
				}
				tally[op].finished++
			case <-time.After(time.Duration(r.Int64N(int64(crashWindow[op])))):
				cmd.Process.Signal(syscall.SIGKILL)
				<-done
				tally[op].kills++
			}
		}

		var logs logtest.Buffer // the background collection logs too
		o := crashOptions(t)
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		start := time.Now()
		s, err := store.Open(context.Background(), store.EmailDir(dir), o)
		if err != nil {
			t.Fatalf("run %d (%s): the store does not open after the kill: %v", run, op, err)
		}
		slowest = max(slowest, time.Since(start))
		if strings.Contains(logs.String(), "rebuilding bloom filter") {
			if op == "filter-log" {
				// The record is synced before the commit, and a torn
				// one is its change's, which never committed.
				t.Fatalf("run %d (%s at %s): the filter was rebuilt: %s", run, op, point, logs.String())
			}
			tally[op].rebuilt++
		} else {
			tally[op].loaded++
		}
		checkAllOrNothing(t, s, fmt.Sprintf("run %d (%s) after the kill", run, op))
		if op == "delete-import" {
			// Another breach at once, before anything else: the deleted
			// breach's uncollected rows must not become its own.
			importAll(t, s, storetest.Breach("Next"), crashDigests("Next"), 5000)
			checkAllOrNothing(t, s, fmt.Sprintf("run %d (%s) after the next import", run, op))
			checkSample(t, s, "Next", true)
		}
		if err := crashWork(context.Background(), s, op); err != nil {
			t.Fatalf("run %d (%s): doing the work again: %v", run, op, err)
		}
		checkAllOrNothing(t, s, fmt.Sprintf("run %d (%s) after finishing", run, op))
		wantLarge := op != "delete" && op != "delete-import"
		checkSample(t, s, "Large", wantLarge)
		if op != "first-import" {
			checkSample(t, s, "Base", true)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(dir)
	}
	for _, op := range crashOps {
		c := tally[op]
		t.Logf("%-13s %3d killed mid-work, %3d finished first; at reopen the filter was loaded %3d times, rebuilt %3d",
			op, c.kills, c.finished, c.loaded, c.rebuilt)
	}
	t.Logf("slowest reopen after a kill: %v", slowest.Round(time.Millisecond))
}

// onlineImportKilled waits for the serving child's address, starts
// client.Import of breach Large through it, and kills the child after
// delay; it reports whether the kill came before the import's answer (a
// kill after it still kills a serving daemon, and is checked the same way).
func onlineImportKilled(t *testing.T, dir string, done <-chan error, p *os.Process, delay time.Duration) bool {
	t.Helper()
	var addr []byte
	for start := time.Now(); len(addr) == 0; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("the serving child exited: %v", err)
		default:
		}
		if time.Since(start) > 30*time.Second {
			p.Kill()
			t.Fatal("the serving child did not start within 30s")
		}
		addr, _ = os.ReadFile(dir + ".addr")
	}
	conn, err := client.Dial(string(addr), client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	imported := make(chan error, 1)
	go func() {
		_, err := client.New(conn).Import(context.Background(), storetest.Breach("Large"), storetest.Batches(crashDigests("Large"), 5000, nil))
		imported <- err
	}()
	var finished bool
	select {
	case err := <-imported:
		if err != nil {
			t.Fatalf("online import before the kill: %v", err)
		}
		finished = true
	case <-time.After(delay):
	}
	p.Signal(syscall.SIGKILL)
	if err := <-done; !killed(err) {
		t.Fatalf("the serving child: %v, want killed", err)
	}
	if !finished {
		<-imported // fails: the daemon is gone
	}
	os.Remove(dir + ".addr")
	return !finished
}

// crashChild is this test binary run as the crash harness's child on dir.
func crashChild(dir, op, point string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BREACHD_CRASH_DIR="+dir, "BREACHD_CRASH_OP="+op, "BREACHD_CRASH_POINT="+point)
	return cmd
}

func killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// checkAllOrNothing checks that each breach in the catalogue holds all of a
// sample of its accounts, that each breach not in it holds none, and that
// no outsider is exposed.
func checkAllOrNothing(t *testing.T, s *store.Store, when string) {
	t.Helper()
	bs, _, err := s.Breaches(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, b := range bs {
		listed[b.Name] = true
	}
	for _, name := range []string{"Base", "Large", "Next"} {
		ds := crashDigests(name)
		var in int
		for i := 0; i < len(ds); i += len(ds) / 300 {
			got, _, err := s.Lookup(context.Background(), ds[i])
			if err != nil {
				t.Fatal(err)
			}
			if slices.ContainsFunc(got, func(e *breachd.CatalogEntry) bool { return e.Name == name }) {
				in++
			}
		}
		if want := 301; (listed[name] && in < want-1) || (!listed[name] && in != 0) {
			t.Fatalf("%s: breach %s (listed %v) holds %d of its %d sampled accounts: not all or nothing", when, name, listed[name], in, want)
		}
	}
	// A deleted breach's own accounts (Large's beyond those it shares with
	// Base) answer under no breach at all.
	if !listed["Large"] {
		for _, d := range crashDigests("Large")[1000:] {
			if got, _, _ := s.Lookup(context.Background(), d); len(got) > 0 {
				t.Fatalf("%s: an account of deleted breach Large answers %s", when, got[0].Name)
			}
		}
	}
	for _, d := range crashDigests("Outsiders") {
		if got, _, _ := s.Lookup(context.Background(), d); len(got) > 0 {
			t.Fatalf("%s: an outsider is exposed", when)
		}
	}
}

func checkSample(t *testing.T, s *store.Store, name string, want bool) {
	t.Helper()
	ds := crashDigests(name)
	private := os.Getenv(crashPrivateKey) != ""
	var bits int
	if private {
		bits = waitBuckets(t, s).PrefixBits
	}
	for i := 1000; i < len(ds); i += 97 { // accounts of this breach alone
		got, _, err := s.Lookup(context.Background(), ds[i])
		if err != nil {
			t.Fatal(err)
		}
		if (len(got) > 0) != want {
			t.Fatalf("account %d of %s exposed = %v, want %v", i, name, len(got) > 0, want)
		}
		if private && i%(97*4) == 1000%(97*4) {
			if pg, _ := privateCheck(t, s, ds[i], bits); !slices.Equal(names(pg), names(got)) {
				t.Fatalf("account %d of %s: private check %v, plain %v", i, name, names(pg), names(got))
			}
		}
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
}
