package service_test

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"iter"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// pairService returns the use cases over real email, pair and SHA-1
// corpora in a temporary directory.
func pairService(tb testing.TB) (*service.Service, *store.Store, *store.Store, *store.Passwords) {
	tb.Helper()
	o := store.DefaultOptions()
	o.ExpectedKeys = 1024
	dir := tb.TempDir()
	emails, err := store.Open(context.Background(), store.EmailDir(dir), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { emails.Close() })
	pairs, err := store.OpenPairs(context.Background(), store.PairDir(dir), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pairs.Close() })
	pw, err := store.OpenPasswords(context.Background(), store.PasswordDir(dir, breachd.SHA1), breachd.SHA1, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pw.Close() })
	return service.New(emails, service.WithPairs(pairs), service.WithPasswords(breachd.SHA1, pw)), emails, pairs, pw
}

func pwSHA1(i int) [20]byte { return sha1.Sum(fmt.Appendf(nil, "password-%d", i)) }

// combolist returns pairs of accounts ds, account i with password i.
func combolist(ds []breachd.Digest, end error) iter.Seq2[[]breachd.PairRecord, error] {
	return func(yield func([]breachd.PairRecord, error) bool) {
		for i := 0; i < len(ds); i += 7 {
			var b []breachd.PairRecord
			for j := i; j < min(i+7, len(ds)); j++ {
				b = append(b, breachd.PairRecord{Account: ds[j], Password: pwSHA1(j)})
			}
			if !yield(b, nil) {
				return
			}
		}
		if end != nil {
			yield(nil, end)
		}
	}
}

func assess(t *testing.T, svc *service.Service, d breachd.Digest, pw *[20]byte) map[string]breachd.PasswordStatus {
	t.Helper()
	req := breachd.AssessRequest{Account: d}
	if pw != nil {
		req.Password, req.HasPassword = *pw, true
	}
	a, err := svc.Assess(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]breachd.PasswordStatus{}
	for _, b := range a.Breaches {
		out[b.Name] = b.Password
	}
	return out
}

func TestPairStatuses(t *testing.T) {
	t.Parallel()
	svc, _, _, _ := pairService(t)
	sega, combo := storetest.Digests("sega", 50), storetest.Digests("combo", 50)
	both := sega[:10] // in Sega Pass and in the combolist
	unpublished := false
	if _, err := svc.Import(t.Context(), breachd.Breach{Name: "SegaPass", Title: "Sega Pass", PasswordsPublished: &unpublished},
		storetest.Batches(sega, 16, nil)); err != nil {
		t.Fatal(err)
	}
	st, err := svc.ImportPairs(t.Context(), breachd.Breach{Name: "Combo", Title: "A combolist"}, combolist(append(both, combo...), nil), service.CountPasswords())
	if err != nil {
		t.Fatal(err)
	}
	if st.Received != 60 || st.Pairs != 60 || st.Accounts != 60 {
		t.Errorf("stats %+v, want 60 received, pairs and accounts", st)
	}
	right, wrong := pwSHA1(3), pwSHA1(4) // account 3 of the combolist is both[3]
	// The combolist's passwords are counted in the SHA-1 corpus.
	if a, err := svc.Assess(t.Context(), breachd.AssessRequest{Account: both[3], Password: right, HasPassword: true}); err != nil || a.PasswordCount != 1 {
		t.Errorf("a combolist's password: count %d, %v; want 1", a.PasswordCount, err)
	}
	for _, tt := range []struct {
		name string
		d    breachd.Digest
		pw   *[20]byte
		want map[string]breachd.PasswordStatus
	}{
		{"in both, its password", both[3], &right, map[string]breachd.PasswordStatus{"SegaPass": breachd.PasswordUnknown, "Combo": breachd.PasswordExposed}},
		{"in both, another password", both[3], &wrong, map[string]breachd.PasswordStatus{"SegaPass": breachd.PasswordUnknown, "Combo": breachd.PasswordNotExposed}},
		{"in both, no password asked", both[3], nil, map[string]breachd.PasswordStatus{"SegaPass": breachd.PasswordUnknown, "Combo": breachd.PasswordUnknown}},
		{"only in Sega Pass", sega[20], &right, map[string]breachd.PasswordStatus{"SegaPass": breachd.PasswordUnknown}},
		{"clean", storetest.Digests("clean", 1)[0], &right, map[string]breachd.PasswordStatus{}},
	} {
		got := assess(t, svc, tt.d, tt.pw)
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}

	// A breach held with its passwords takes only combolists, and one
	// without them only accounts: a mix would make "not exposed" wrong.
	if _, err := svc.Import(t.Context(), breachd.Breach{Name: "Combo", Title: "x"}, storetest.Batches(sega, 16, nil)); !errors.Is(err, breachd.ErrFailedPrecondition) {
		t.Errorf("accounts without passwords into Combo: %v, want FAILED_PRECONDITION", err)
	}
	if _, err := svc.ImportPairs(t.Context(), breachd.Breach{Name: "SegaPass", Title: "x"}, combolist(combo, nil)); !errors.Is(err, breachd.ErrFailedPrecondition) {
		t.Errorf("a combolist into SegaPass: %v, want FAILED_PRECONDITION", err)
	}
	if _, err := svc.ImportPairs(t.Context(), breachd.Breach{Name: "Enc", Title: "x", PasswordsPublished: &unpublished}, combolist(combo, nil)); !errors.Is(err, breachd.ErrInvalidArgument) {
		t.Errorf("a combolist whose manifest says PasswordsPublished: false: %v, want INVALID_ARGUMENT", err)
	}

	// Deleting the breach deletes its pairs: a new Combo of accounts only
	// says nothing of their passwords.
	if _, _, err := svc.DeleteBreach(t.Context(), "Combo"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Import(t.Context(), breachd.Breach{Name: "Combo", Title: "x"}, storetest.Batches(both, 16, nil)); err != nil {
		t.Fatal(err)
	}
	if got := assess(t, svc, both[3], &wrong); got["Combo"] != breachd.PasswordUnknown {
		t.Errorf("after delete and an import without passwords: Combo %s, want unknown", got["Combo"])
	}
	if a, err := svc.Assess(t.Context(), breachd.AssessRequest{Account: both[3], Password: right, HasPassword: true}); err != nil || a.PasswordCount != 0 {
		t.Errorf("after its breach was deleted, a combolist's password: count %d, %v; want 0", a.PasswordCount, err)
	}
}

// TestOrphanPairs: pairs whose email breach never committed (a pair
// import cut between its two commits) or was deleted (a delete cut
// between its two steps) are read by no answer, and the next import of
// the name removes them.
func TestOrphanPairs(t *testing.T) {
	t.Parallel()
	svc, _, pairs, _ := pairService(t)
	ds := storetest.Digests("orphan", 20)
	// The pairs' commit, without the emails': what a crash between leaves.
	pds := make([]breachd.Digest, len(ds))
	for i := range ds {
		pw := pwSHA1(i)
		pds[i] = breachd.PairDigest(&ds[i], &pw)
	}
	if _, err := pairs.Import(t.Context(), breachd.Breach{Name: "Cut", Title: "x"}, storetest.Batches(pds, 8, nil)); err != nil {
		t.Fatal(err)
	}
	right := pwSHA1(2)
	if got := assess(t, svc, ds[2], &right); len(got) != 0 {
		t.Errorf("orphan pairs answered: %v", got)
	}
	// A new breach of that name, accounts only: its passwords are unknown,
	// never the orphan's "exposed" or "not exposed".
	if _, err := svc.Import(t.Context(), breachd.Breach{Name: "Cut", Title: "x"}, storetest.Batches(ds, 8, nil)); err != nil {
		t.Fatal(err)
	}
	other := pwSHA1(99)
	for _, pw := range []*[20]byte{&right, &other} {
		if got := assess(t, svc, ds[2], pw); got["Cut"] != breachd.PasswordUnknown {
			t.Errorf("after an import of accounts only over orphan pairs: %v, want Cut unknown", got)
		}
	}
	if _, _, err := pairs.Breach(t.Context(), "Cut"); !errors.Is(err, breachd.ErrNotFound) {
		t.Errorf("the orphan pairs are still there: %v", err)
	}
}

// TestPairImportFails: a combolist that fails midway commits nothing in
// either corpus.
func TestPairImportFails(t *testing.T) {
	t.Parallel()
	svc, emails, pairs, _ := pairService(t)
	ds := storetest.Digests("fail", 40)
	broken := errors.New("the dump is truncated")
	if _, err := svc.ImportPairs(t.Context(), breachd.Breach{Name: "Broken", Title: "x"}, combolist(ds, broken)); !errors.Is(err, broken) {
		t.Fatalf("ImportPairs = %v, want the reader's error", err)
	}
	for _, st := range []*store.Store{emails, pairs} {
		if bs, _, _ := st.Breaches(t.Context()); len(bs) != 0 {
			t.Errorf("a failed pair import left %d breaches", len(bs))
		}
	}
	// And then it imports.
	if _, err := svc.ImportPairs(t.Context(), breachd.Breach{Name: "Broken", Title: "x"}, combolist(ds, nil)); err != nil {
		t.Fatal(err)
	}
	right := pwSHA1(5)
	if got := assess(t, svc, ds[5], &right); got["Broken"] != breachd.PasswordExposed {
		t.Errorf("%v, want Broken exposed", got)
	}
}

// TestPairLink: pairs answer only for the email breach they were imported
// with. A read replica can apply one corpus's change before the other's
// (here: the pair corpus holds another import's pairs under the name, as
// after a delete and a new combolist on the writer): the password status
// is then unknown, never the other import's exposed or not exposed.
func TestPairLink(t *testing.T) {
	t.Parallel()
	svc, emails, pairs, _ := pairService(t)
	ds := storetest.Digests("link", 30)
	if _, err := svc.ImportPairs(t.Context(), breachd.Breach{Name: "Combo", Title: "x"}, combolist(ds, nil)); err != nil {
		t.Fatal(err)
	}
	e, _, err := emails.Breach(t.Context(), "Combo")
	if err != nil || e.Pairs == 0 {
		t.Fatalf("the email breach of a combolist: %+v, %v; want a pair id", e, err)
	}
	right := pwSHA1(4)
	if got := assess(t, svc, ds[4], &right); got["Combo"] != breachd.PasswordExposed {
		t.Fatalf("linked: %v", got)
	}
	// The pair corpus now holds another import's pairs under the name.
	if _, _, err := pairs.DeleteBreach(t.Context(), "Combo"); err != nil {
		t.Fatal(err)
	}
	pds := make([]breachd.Digest, len(ds))
	for i := range ds {
		pw := pwSHA1(i)
		pds[i] = breachd.PairDigest(&ds[i], &pw)
	}
	if _, err := pairs.Import(t.Context(), breachd.Breach{Name: "Combo", Title: "x", Pairs: e.Pairs + 1}, storetest.Batches(pds, 8, nil)); err != nil {
		t.Fatal(err)
	}
	other := pwSHA1(99)
	for _, pw := range []*[20]byte{&right, &other} {
		if got := assess(t, svc, ds[4], pw); got["Combo"] != breachd.PasswordUnknown {
			t.Errorf("pairs of another import: %v, want Combo unknown", got)
		}
	}
	// A correction of the breach keeps its link; a manifest cannot set one.
	if _, _, err := svc.UpdateBreach(t.Context(), breachd.Breach{Name: "Combo", Title: "corrected", Pairs: 7}); err != nil {
		t.Fatal(err)
	}
	if e2, _, _ := emails.Breach(t.Context(), "Combo"); e2.Pairs != e.Pairs || e2.Title != "corrected" {
		t.Errorf("after a correction: pair id %d, title %q; want %d, corrected", e2.Pairs, e2.Title, e.Pairs)
	}
	// The next import of the name removes the stray pairs and adds its own
	// under the breach's id.
	if _, err := svc.ImportPairs(t.Context(), breachd.Breach{Name: "Combo", Title: "x"}, combolist(ds, nil)); err != nil {
		t.Fatal(err)
	}
	if got := assess(t, svc, ds[4], &right); got["Combo"] != breachd.PasswordExposed {
		t.Errorf("after the next import: %v, want exposed", got)
	}
}

// TestDeleteKeepsOtherRelease: deleting a combolist's breach removes the
// SHA-1 release it counted its passwords in, never a release that only
// shares its name.
func TestDeleteKeepsOtherRelease(t *testing.T) {
	t.Parallel()
	svc, _, _, pw := pairService(t)
	h := pwSHA1(1)
	rec := breachd.PasswordRecord{Count: 42}
	copy(rec.Hash[:], h[:])
	one := func(yield func([]breachd.PasswordRecord, error) bool) { yield([]breachd.PasswordRecord{rec}, nil) }
	if _, err := pw.Import(t.Context(), breachd.Breach{Name: "Combo", Title: "Pwned Passwords, say"}, 1, one); err != nil {
		t.Fatal(err)
	}
	ds := storetest.Digests("other", 10)
	if _, err := svc.ImportPairs(t.Context(), breachd.Breach{Name: "Combo", Title: "x"}, combolist(ds, nil)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.DeleteBreach(t.Context(), "Combo"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pw.Breach(t.Context(), "Combo"); err != nil {
		t.Errorf("the release that only shares the name was deleted: %v", err)
	}
	// Nor may a combolist count its passwords into such a release.
	if _, err := svc.ImportPairs(t.Context(), breachd.Breach{Name: "Combo", Title: "x"}, combolist(ds, nil), service.CountPasswords()); !errors.Is(err, breachd.ErrFailedPrecondition) {
		t.Errorf("counting into another release of the name: %v, want FAILED_PRECONDITION", err)
	}
}
