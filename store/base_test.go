package store

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/breachd/breachd"
)

// TestBaseReferences: a base dropped while a reader holds it stays mapped
// and answers until the reader lets go; the file goes at once, and no new
// reader gets it. (TestBaseDroppedUnderReaders drives the same through
// lookups and a delete, where the window is too short to hit on purpose.)
func TestBaseReferences(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	o := DefaultOptions()
	o.Index = IndexOff
	p, err := OpenPasswords(ctx, dir, breachd.SHA1, o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	recs := make([]breachd.PasswordRecord, 1000)
	for i := range recs {
		h := sha1.Sum(fmt.Appendf(nil, "ref-%d", i))
		copy(recs[i].Hash[:], h[:])
		recs[i].Count = uint64(i + 1)
	}
	slices.SortFunc(recs, func(a, b breachd.PasswordRecord) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	_, err = p.Import(ctx, breachd.Breach{Name: "R", Title: "R"}, 0, func(yield func([]breachd.PasswordRecord, error) bool) {
		yield(recs, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	b := p.getBase()
	if b == nil {
		t.Fatal("no base after a first release in hash order")
	}
	if err := p.dropBase(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, baseFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the base file after its drop: %v", err)
	}
	if p.getBase() != nil {
		t.Error("a reader got the base after its drop")
	}
	for _, r := range recs {
		if n, ok := b.x.findCount(r.Hash[:20]); !ok || n != r.Count {
			t.Fatalf("the dropped base, still held, answers %d, %v; want %d", n, ok, r.Count)
		}
	}
	b.put()
	if n := b.refs.Load(); n != 0 {
		t.Errorf("%d references after the last reader's put, want 0", n)
	}
}
