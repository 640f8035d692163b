package store

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store/storetest"
)

// legacyData writes, in dir, a data directory in the layout and formats of
// the releases before 2026-12 (commit 6e43a45): the email corpus at the
// root, password corpora in passwords-sha1 and passwords-ntlm whose release
// records count "Hashes", and no segment counter in any corpus.
func legacyData(t *testing.T, dir string) (emails []breachd.Digest, hashes map[breachd.HashKind][][]byte) {
	t.Helper()
	ctx := context.Background()
	o := DefaultOptions()
	o.MemTableSize, o.BackgroundShare = 4<<20, 1
	s, err := Open(ctx, dir, o) // the root: the old layout
	if err != nil {
		t.Fatal(err)
	}
	emails = storetest.Digests("legacy", 3000)
	for _, b := range []string{"Alpha", "Beta"} {
		ds := emails[:2000]
		if b == "Beta" {
			ds = emails[1000:]
		}
		if _, err := s.Import(ctx, storetest.Breach(b), storetest.Batches(ds, 500, nil)); err != nil {
			t.Fatal(err)
		}
	}
	dropCounter(t, &s.corpus)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	hashes = map[breachd.HashKind][][]byte{}
	for _, k := range breachd.HashKinds {
		p, err := OpenPasswords(ctx, PasswordDir(dir, k), k, o)
		if err != nil {
			t.Fatal(err)
		}
		var recs []breachd.PasswordRecord
		for i, d := range storetest.Digests("pw-"+k.String(), 500) {
			var r breachd.PasswordRecord
			copy(r.Hash[:], d[:])
			r.Count = uint64(i + 1)
			recs = append(recs, r)
			hashes[k] = append(hashes[k], d[:k.Size()])
		}
		if _, err := p.Import(ctx, breachd.Breach{Name: "PP", Title: "PP"}, 0, func(yield func([]breachd.PasswordRecord, error) bool) { yield(recs, nil) }); err != nil {
			t.Fatal(err)
		}
		dropCounter(t, &p.corpus)
		// The release record as the old password store wrote it.
		err = p.db.Update(func(txn *badger.Txn) error {
			v, _ := json.Marshal(struct {
				breachd.Breach
				Hashes uint64 `json:"Hashes"`
			}{breachd.Breach{Name: "PP", Title: "PP"}, 500})
			return txn.Set(breachKey("PP"), v)
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return emails, hashes
}

func dropCounter(t *testing.T, c *corpus) {
	t.Helper()
	if err := c.db.Update(func(txn *badger.Txn) error { return txn.Delete(keyNextSegment) }); err != nil {
		t.Fatal(err)
	}
}

// checkData opens the corpora of data directory dir in the current layout
// and checks every answer legacyData's corpora gave, then that imports and
// deletes work on them.
func checkData(t *testing.T, dir string, emails []breachd.Digest, hashes map[breachd.HashKind][][]byte) {
	t.Helper()
	ctx := context.Background()
	o := DefaultOptions()
	o.MemTableSize, o.BackgroundShare = 4<<20, 1
	s, err := Open(ctx, EmailDir(dir), o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, d := range emails {
		var want []string
		if i < 2000 {
			want = append(want, "Alpha")
		}
		if i >= 1000 {
			want = append(want, "Beta")
		}
		bs, v, err := s.Lookup(ctx, d)
		var got []string
		for _, b := range bs {
			got = append(got, b.Name)
		}
		if err != nil || v != 2 || !slices.Equal(got, want) {
			t.Fatalf("after the migration, account %d is in %v at version %d (%v), want %v at 2", i, got, v, err, want)
		}
	}
	for _, k := range breachd.HashKinds {
		p, err := OpenPasswords(ctx, PasswordDir(dir, k), k, o)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for i, h := range hashes[k] {
			ph, _ := breachd.PasswordHashFromBytes(k, h)
			if e, err := p.Lookup(ctx, ph); err != nil || e.Count != uint64(i+1) {
				t.Fatalf("%s hash %d: count %d (%v), want %d", k, i, e.Count, err, i+1)
			}
		}
		if rs := p.Releases(); len(rs) != 1 || rs[0].Hashes != 500 {
			t.Fatalf("%s releases = %+v, want PP with 500 hashes", k, rs)
		}
	}
	// Changes work: a delete, then an import given a fresh segment id.
	if _, _, err := s.DeleteBreach(ctx, "Beta"); err != nil {
		t.Fatal(err)
	}
	gamma := storetest.Digests("gamma", 100)
	if _, err := s.Import(ctx, storetest.Breach("Gamma"), storetest.Batches(gamma, 100, nil)); err != nil {
		t.Fatal(err)
	}
	for _, d := range emails[2000:] {
		if bs, _, _ := s.Lookup(ctx, d); len(bs) != 0 {
			t.Fatalf("an account of deleted Beta is in %s", bs[0].Name)
		}
	}
	if bs, _, _ := s.Lookup(ctx, gamma[0]); len(bs) != 1 || bs[0].Name != "Gamma" {
		t.Fatalf("Gamma's account is in %v", bs)
	}
}

// TestMigrateLayout: a data directory of the layout before 2026-12 is
// migrated on first open and answers exactly as before; a second call
// finds nothing to do; one that has the corpus both at the root and in
// its directory is refused.
func TestMigrateLayout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	emails, hashes := legacyData(t, dir)
	moved, err := MigrateLayout(dir, nil)
	if err != nil || !moved {
		t.Fatalf("MigrateLayout = %v, %v; want it to move the corpus", moved, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); !os.IsNotExist(err) {
		t.Fatalf("Badger's files are still at the root: %v", err)
	}
	if moved, err := MigrateLayout(dir, nil); err != nil || moved {
		t.Fatalf("MigrateLayout again = %v, %v; want nothing to do", moved, err)
	}
	checkData(t, dir, emails, hashes)
	os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("x"), 0o600)
	if _, err := MigrateLayout(dir, nil); err == nil {
		t.Fatal("MigrateLayout with a corpus at the root and in emails/ = nil, want a refusal")
	}
}

// TestMigrateLayoutHeld: while a daemon of the old layout holds the corpus
// at the root open (Badger's lock, a flock of the directory), nothing is
// moved from under it. (The check locked Badger's LOCK file, which holds
// only a process ID: it never saw the daemon, and moved its files.)
func TestMigrateLayoutHeld(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	legacyData(t, dir)
	o := DefaultOptions()
	o.MemTableSize = 4 << 20
	old, err := Open(t.Context(), dir, o) // the old layout's daemon
	if err != nil {
		t.Fatal(err)
	}
	if moved, err := MigrateLayout(dir, nil); moved || !errors.Is(err, ErrLocked) {
		t.Fatalf("MigrateLayout beside an open corpus = %v, %v; want ErrLocked", moved, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
		t.Fatalf("Badger's files left the root from under the open corpus: %v", err)
	}
	old.Close()
	if moved, err := MigrateLayout(dir, nil); err != nil || !moved {
		t.Fatalf("MigrateLayout once it is closed = %v, %v", moved, err)
	}
}

// TestMigrateLayoutKilled: a migration killed (SIGKILL) after each of its
// file moves is finished by the next call, and nothing is lost.
func TestMigrateLayoutKilled(t *testing.T) {
	t.Parallel()
	if dir := os.Getenv("BREACHD_MIGRATE_DIR"); dir != "" { // the child
		n, _ := strconv.Atoi(os.Getenv("BREACHD_MIGRATE_KILL_AT"))
		moved := 0
		crashPoint = func(name string) {
			if name == "migrate-moved" {
				if moved++; moved == n {
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
				}
			}
		}
		MigrateLayout(dir, nil)
		return
	}
	template := filepath.Join(t.TempDir(), "template")
	emails, hashes := legacyData(t, template)
	entries, _ := os.ReadDir(template)
	files := 0
	for _, e := range entries {
		if !e.IsDir() && legacyFile(e.Name()) {
			files++
		}
	}
	for _, at := range []int{1, files / 2, files} {
		t.Run(strconv.Itoa(at), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if out, err := exec.Command("cp", "-a", template, dir).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v: %s", err, out)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestMigrateLayoutKilled$", "-test.count=1")
			cmd.Env = append(os.Environ(), "BREACHD_MIGRATE_DIR="+dir, "BREACHD_MIGRATE_KILL_AT="+strconv.Itoa(at))
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); !ok || !ee.Sys().(syscall.WaitStatus).Signaled() {
				t.Fatalf("the migrating child: %v, want it killed after move %d", err, at)
			}
			if moved, err := MigrateLayout(dir, nil); err != nil || !moved {
				t.Fatalf("MigrateLayout after the kill = %v, %v", moved, err)
			}
			checkData(t, dir, emails, hashes)
		})
	}
}
