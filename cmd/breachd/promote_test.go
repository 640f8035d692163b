package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/store"
)

// TestReplicationPromote: 'breachd replication promote' checks every
// corpus of the directory before it changes any (natsrepl TestPromote
// and TestReplicaKilled promote real replicas), refuses one a process
// holds open, and, run again, has nothing left to do.
func TestReplicationPromote(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	follow := func(dir, state string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, natsrepl.FollowedFile), []byte(state), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	promote := func() (string, error) {
		var out bytes.Buffer
		err := run(t.Context(), []string{"replication", "promote", "--data", data}, &out, &out)
		return out.String(), err
	}
	follow(store.EmailDir(data), `{"version":7,"upto":120,"lineage":"l1"}`)
	follow(store.PairDir(data), `{"version":3,"upto":90,"lineage":"l2","applying":4}`)
	if out, err := promote(); err == nil || !strings.Contains(err.Error(), "was applying its writer's version 4") {
		t.Fatalf("promote with a backup applied part way = %v\n%s", err, out)
	}
	if !natsrepl.Follows(store.EmailDir(data)) {
		t.Fatal("a refused promotion changed the email corpus")
	}
	follow(store.PairDir(data), `{"version":3,"upto":90,"lineage":"l2"}`)
	// A process holding a corpus open (a replica still running).
	st, err := store.Open(t.Context(), store.PasswordDir(data, 1), store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := promote(); !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "stop the replica first") {
		t.Fatalf("promote beside an open corpus = %v, want ErrLocked", err)
	}
	st.Close()
	out, err := promote()
	if err != nil || !strings.Contains(out, "promoted 2 corpora") || natsrepl.Follows(store.EmailDir(data)) || natsrepl.Follows(store.PairDir(data)) {
		t.Fatalf("promote = %v\n%s", err, out)
	}
	if out, err := promote(); err != nil || !strings.Contains(out, "nothing to promote") {
		t.Fatalf("promote again = %v\n%s", err, out)
	}
}
