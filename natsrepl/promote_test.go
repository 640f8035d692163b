package natsrepl_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// TestPromote: the writer's disk is lost. A stopped replica's directory
// that holds part of a backup, or must start again from a snapshot, is
// refused; a whole one, promoted, opens as a writer's corpus that answers
// as the lost writer did (its imports, a delete), takes imports and
// deletes of its own, takes the lease, and a new replica following it
// serves all of it.
func TestPromote(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	n := startSingle(t)
	o := natsrepl.Options{URL: n.url(), Retry: 100 * time.Millisecond}
	a, b, c := storetest.Digests("a", 3000), storetest.Digests("b", 2000), storetest.Digests("c", 1000)
	lost := newWriter(t)
	lost.imp(t, "Alpha", a)
	lost.publish(t, o, "lost:7355")
	r := newReplica(t, "")
	r.start(o)
	waitFor(t, "the replica at version 1", func() bool { return ready(r.f) && r.st.Version() == 1 })
	lost.imp(t, "Beta", append(b, a[:100]...))
	if _, _, err := lost.st.DeleteBreach(ctx, "Alpha"); err != nil {
		t.Fatal(err)
	}
	lost.pub.Kick()
	waitFor(t, "the replica at version 3", func() bool { return r.st.Version() == 3 })
	lost.cancel()
	<-lost.done
	r.stop()
	r.cancel = nil
	r.st.Close()

	// What the replica would have recorded had it stopped part way
	// through a backup, or had it to start again: refused, saying why.
	path := filepath.Join(r.dir, natsrepl.FollowedFile)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{"applying": "was applying its writer's version 4", "resync": "must start again from a snapshot", "version": "never finished its first snapshot"} {
		var st map[string]any
		json.Unmarshal(whole, &st)
		switch field {
		case "applying":
			st[field] = 4
		case "resync":
			st[field] = "the writer now publishes another corpus history"
		case "version":
			st[field] = 0
		}
		b, _ := json.Marshal(st)
		os.WriteFile(path, b, 0o600)
		if did, err := natsrepl.Promote(r.dir); did || err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--follow") {
			t.Fatalf("Promote of a replica with %s set = %v, %v; want a refusal saying %q", field, did, err, want)
		}
		if !natsrepl.Follows(r.dir) {
			t.Fatalf("a refused Promote (%s) removed the replica's record", field)
		}
	}
	os.WriteFile(path, whole, 0o600)

	if did, err := natsrepl.Promote(r.dir); !did || err != nil || natsrepl.Follows(r.dir) {
		t.Fatalf("Promote = %v, %v; follows after: %v", did, err, natsrepl.Follows(r.dir))
	}
	if did, err := natsrepl.Promote(r.dir); did || err != nil {
		t.Fatalf("Promote again = %v, %v; want nothing to do", did, err)
	}
	w, err := store.Open(ctx, r.dir, storeOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if v := w.Version(); v != 3 {
		t.Fatalf("the promoted corpus is at version %d, want the lost writer's 3", v)
	}
	answers(t, w, a[:100], []string{"Beta"})
	answers(t, w, a[100:], nil)
	answers(t, w, b, []string{"Beta"})
	if _, err := w.Import(ctx, storetest.Breach("Gamma"), storetest.Batches(append(c, b[:10]...), 1000, nil)); err != nil {
		t.Fatal(err)
	}
	answers(t, w, b[:10], []string{"Beta", "Gamma"})
	answers(t, w, c, []string{"Gamma"})

	// It takes the lease and publishes: a new replica serves all of it.
	id, err := natsrepl.WriterID(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := natsrepl.Takeover(ctx, o, id, "promoted:7355"); err != nil {
		t.Fatal(err)
	}
	promoted := &writer{dir: r.dir, st: w}
	promoted.publish(t, o, "promoted:7355")
	promoted.pub.Kick()
	r2 := newReplica(t, "")
	r2.start(o)
	waitFor(t, "a new replica at the promoted writer's version", func() bool { return ready(r2.f) && r2.st.Version() == w.Version() })
	answers(t, r2.st, a[:100], []string{"Beta"})
	answers(t, r2.st, a[100:], nil)
	answers(t, r2.st, b[:10], []string{"Beta", "Gamma"})
	answers(t, r2.st, b[10:], []string{"Beta"})
	answers(t, r2.st, c, []string{"Gamma"})
}
