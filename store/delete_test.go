package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"

	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/daemon/daemontest"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// TestDeletedBreachNeverComesBack: a delete whose caller stops waiting at
// any point of the collection (a client's Ctrl-C), followed at once by the
// import of another breach, leaves none of the deleted breach's accounts
// exposed, under any name, before or after a restart. Segment ids were once
// reused: the next import was given the deleted breach's id, and its commit
// made every uncollected row its own.
func TestDeletedBreachNeverComesBack(t *testing.T) {
	t.Parallel()
	base := storetest.Digests("base", 1000)
	gone := append(slices.Clone(base[:300]), storetest.Digests("gone", 6000)...)
	next := append(slices.Clone(base[300:400]), storetest.Digests("next", 1000)...)
	total := int64(len(base) + len(gone) - 300) // the rows the collection reads
	runs := deleteRuns(t)
	for run := range runs + 1 {
		at := 1 + int64(run)*total/int64(runs) // the last: after the collection
		t.Run(fmt.Sprintf("caller-stops-at-row-%d", at), func(t *testing.T) {
			t.Parallel()
			var rows atomic.Int64
			var stop atomic.Pointer[context.CancelFunc]
			o := store.WithHook(options(0), func(point string) {
				if point == "collect-row" && rows.Add(1) == at {
					if c := stop.Load(); c != nil {
						(*c)()
					}
				}
			})
			dir := t.TempDir()
			s := open(t, dir, o)
			importAll(t, s, storetest.Breach("Base"), base, 997)
			importAll(t, s, storetest.Breach("Gone"), gone, 997)
			ctx, cancel := context.WithCancel(t.Context())
			stop.Store(&cancel)
			if _, _, err := s.DeleteBreach(ctx, "Gone"); err != nil {
				t.Fatalf("DeleteBreach = %v", err)
			}
			importAll(t, s, storetest.Breach("Next"), next, 997)
			check := func(when string) {
				t.Helper()
				for _, d := range gone[300:] {
					if bs, _, err := s.Lookup(t.Context(), d); err != nil || len(bs) > 0 {
						t.Fatalf("%s: an account of the deleted breach answers %v, %v; want no breach", when, names(bs), err)
					}
				}
				wantBreaches(t, s, base[:300], "Base")
				wantBreaches(t, s, base[300:400], "Base", "Next")
				wantBreaches(t, s, next[100:], "Next")
				cs, err := s.Collect(t.Context())
				if err != nil || len(cs.Misattributed) > 0 {
					t.Fatalf("%s: Collect = %+v, %v; want every breach's rows as counted", when, cs, err)
				}
			}
			check("after the next import")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open(t, dir, o)
			defer s.Close()
			check("after a restart")
		})
	}
}

// TestAbandonedImportCollected: an import its caller abandons (a broken
// stream, an idle client) is collected by the running store, without a
// restart, and the next import waits for that.
func TestAbandonedImportCollected(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), options(0))
	defer s.Close()
	base := storetest.Digests("base", 1000)
	importAll(t, s, storetest.Breach("Base"), base, 997)
	for i := range 3 {
		ds := storetest.Digests(fmt.Sprintf("abandoned%d", i), 5000)
		_, err := s.Import(t.Context(), storetest.Breach("Abandoned"), storetest.Batches(ds, 997, errors.New("client gone")))
		if err == nil {
			t.Fatal("an import whose batches fail committed")
		}
	}
	// Collect waits for the store's own collection, then finds nothing left.
	cs, err := s.Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if cs.Segments != 0 || cs.Deleted != 0 {
		t.Fatalf("Collect after abandoned imports = %+v; want them collected already", cs)
	}
	if got := s.Stats().Keys; got != 1000 {
		t.Fatalf("Stats().Keys = %d, want 1000", got)
	}
	wantBreaches(t, s, base, "Base")
}

// deleteRuns is how many kill or stop points each interrupted-delete test
// spreads over the collection: a few in make test, BREACHD_DELETE_RUNS
// (make crash-test: 20) otherwise.
func deleteRuns(t *testing.T) int {
	if s := os.Getenv("BREACHD_DELETE_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("BREACHD_DELETE_RUNS=%q: want a count", s)
		}
		return n
	}
	return 4
}

// TestDeleteThroughDaemon: 'breachd breach delete --addr', its client
// stopped (Ctrl-C: the call's context ends; SIGKILL: the connection
// closes) at points spread over the daemon's collection of the deleted
// rows, then another breach imported through the same daemon: none of the
// deleted breach's accounts is exposed under any name. Before, the
// client's cancellation stopped the collection, and the next import was
// given the deleted breach's segment id.
func TestDeleteThroughDaemon(t *testing.T) {
	t.Parallel()
	base := storetest.Digests("base", 1000)
	gone := append(slices.Clone(base[:300]), storetest.Digests("gone", 6000)...)
	next := append(slices.Clone(base[300:400]), storetest.Digests("next", 1000)...)
	template := filepath.Join(t.TempDir(), "template")
	s := open(t, store.EmailDir(template), options(0))
	importAll(t, s, storetest.Breach("Base"), base, 997)
	importAll(t, s, storetest.Breach("Gone"), gone, 997)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	total := int64(len(base) + len(gone) - 300) // the rows a collection reads
	runs := deleteRuns(t)
	for _, mode := range []string{"ctrl-c", "sigkill"} {
		for run := range runs {
			at := 1 + int64(run)*total/int64(runs)
			t.Run(fmt.Sprintf("%s-at-row-%d", mode, at), func(t *testing.T) {
				t.Parallel()
				dir := filepath.Join(t.TempDir(), "data")
				copyDir(t, template, dir)
				var rows atomic.Int64
				var stop atomic.Pointer[func()]
				o := store.WithHook(options(0), func(point string) {
					if point == "collect-row" && rows.Add(1) == at {
						if f := stop.Load(); f != nil {
							(*f)()
						}
					}
				})
				var logs logtest.Buffer
				defer func() {
					if t.Failed() {
						t.Log(logs.String())
					}
				}()
				srv := daemontest.Start(t, dir, func(c *daemon.Config) { c.Emails = o }, slog.New(slog.NewTextHandler(&logs, nil)))
				conn, err := client.Dial("unix://"+srv.AdminSocket(), client.DialOptions{})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				f := func() {
					if mode == "ctrl-c" {
						cancel()
					} else {
						conn.Close()
					}
				}
				stop.Store(&f)
				_, _, err = client.New(conn).DeleteBreach(ctx, "Gone")
				if err != nil && status.Code(err) != codes.Canceled && status.Code(err) != codes.Unavailable {
					t.Fatalf("DeleteBreach = %v", err)
				}
				conn.Close()
				conn, err = client.Dial("unix://"+srv.AdminSocket(), client.DialOptions{})
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				c := client.New(conn)
				if _, err := c.Import(t.Context(), storetest.Breach("Next"), storetest.Batches(next, 997, nil)); err != nil {
					t.Fatalf("Import(Next) through the daemon = %v", err)
				}
				for r, err := range c.CheckDigests(t.Context(), slices.Values(gone[300:])) {
					if err != nil || r.Exposed {
						t.Fatalf("account %d of the deleted breach: exposed %v in %v, %v; want not exposed", r.Index, r.Exposed, r.BreachNames, err)
					}
				}
				for r, err := range c.CheckDigests(t.Context(), slices.Values(next[100:])) {
					if err != nil || !slices.Equal(r.BreachNames, []string{"Next"}) {
						t.Fatalf("account %d of Next: %+v, %v; want in Next alone", r.Index, r, err)
					}
				}
			})
		}
	}
}
