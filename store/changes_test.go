package store

import (
	"bufio"
	"context"
	"crypto/sha256"
	"testing"

	"github.com/breachd/breachd"
)

// TestWriteMergedVersions: of a key's rows in several sources, the merge
// takes the one of the highest version (a replica's backup rows, whose
// runs may hold an older version than a later source), and among equal
// versions (a writer's rows, all 0) the newest source's; a nil value
// removes the key. (Values are of 4 bytes, as an index's sets are.)
func TestWriteMergedVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := &s.corpus
	d := func(name string) breachd.Digest { return sha256.Sum256([]byte(name)) }
	k1, k2, k3, k4 := d("k1"), d("k2"), d("k3"), d("k4")
	for _, tc := range []struct {
		name     string
		run      map[breachd.Digest][]byte
		runVers  map[breachd.Digest]uint64
		rest     map[breachd.Digest][]byte
		restVers map[breachd.Digest]uint64
		want     map[breachd.Digest]string // "" : absent
	}{
		{
			name:     "versions",
			run:      map[breachd.Digest][]byte{k1: []byte("run5"), k2: []byte("run2"), k3: nil, k4: nil},
			runVers:  map[breachd.Digest]uint64{k1: 5, k2: 2, k3: 1, k4: 7},
			rest:     map[breachd.Digest][]byte{k1: []byte("rst3"), k2: []byte("rst4"), k3: []byte("rst2"), k4: []byte("rst6")},
			restVers: map[breachd.Digest]uint64{k1: 3, k2: 4, k3: 2, k4: 6},
			want:     map[breachd.Digest]string{k1: "run5", k2: "rst4", k3: "rst2", k4: ""},
		},
		{
			name: "no versions: the newest source",
			run:  map[breachd.Digest][]byte{k1: []byte("run_"), k2: []byte("run_")},
			rest: map[breachd.Digest][]byte{k1: []byte("rest"), k3: []byte("rest")},
			want: map[breachd.Digest]string{k1: "rest", k2: "run_", k3: "rest", k4: ""},
		},
	} {
		f, err := spillChanges(t.TempDir(), tc.run, tc.runVers)
		if err != nil {
			t.Fatal(err)
		}
		rest := mapRows(tc.rest, func(v []byte) []byte { return v })
		rest.withVersions(tc.restVers)
		x, _, err := c.writeMerged(ctx, 1, 4, &runRows{r: bufio.NewReader(f)}, rest)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range tc.want {
			id, ok := x.find(&k)
			got := ""
			if ok {
				got = string(x.sets[id])
			}
			if got != want {
				t.Errorf("%s: key %x = %q, want %q", tc.name, k[:4], got, want)
			}
		}
		unmapFile(x.mapped)
	}
}
