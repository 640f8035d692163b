package service_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
)

// newService returns the use cases over a real store in a temporary directory.
func newService(tb testing.TB) (*service.Service, *store.Store) {
	tb.Helper()
	o := store.DefaultOptions()
	o.ExpectedKeys = 1024
	st, err := store.Open(context.Background(), tb.TempDir(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return service.New(st), st
}

func batches(bs ...[]breachd.Digest) func(func([]breachd.Digest, error) bool) {
	return func(yield func([]breachd.Digest, error) bool) {
		for _, b := range bs {
			if !yield(b, nil) {
				return
			}
		}
	}
}

func TestImportRules(t *testing.T) {
	t.Parallel()
	svc, st := newService(t)
	ok := breachd.Breach{Name: "Alpha", Title: "Alpha"}
	ds := storetest.Digests("a", 20)
	tests := []struct {
		name    string
		b       breachd.Breach
		batches func(func([]breachd.Digest, error) bool)
		kind    error
		msg     string
	}{
		{"no digests", ok, batches(), breachd.ErrEmptyImport, "import received no digests for breach Alpha: nothing was committed"},
		{"empty batch", ok, batches(ds[:5], nil), breachd.ErrInvalidBatch, "invalid batch: empty"},
		{"oversized batch", ok, batches(make([]breachd.Digest, breachd.MaxBatch+1)), breachd.ErrInvalidBatch, "got 10001 digests, want at most 10000"},
		{"invalid breach", breachd.Breach{Name: "a b", Title: "x"}, batches(ds), breachd.ErrInvalidBreach, `Name "a b" must be`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := svc.Import(t.Context(), tt.b, tt.batches)
			if !errors.Is(err, tt.kind) || !errors.Is(err, breachd.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Import = %v, want %v containing %q", err, tt.kind, tt.msg)
			}
			if v := st.Version(); v != 0 {
				t.Fatalf("corpus version = %d after a refused import, want 0", v)
			}
		})
	}
	if s, err := svc.Import(t.Context(), ok, batches(ds[:7], ds[7:])); err != nil || s.NewAccounts != 20 {
		t.Fatalf("Import = %+v, %v", s, err)
	}
}

// TestCheckBatchSets checks the packed answer: exposed positions, and one
// set per distinct combination of breaches.
func TestCheckBatchSets(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	a, b, both := storetest.Digests("a", 10), storetest.Digests("b", 10), storetest.Digests("both", 10)
	for name, ds := range map[string][]breachd.Digest{"Alpha": append(slices.Clone(a), both...), "Beta": append(slices.Clone(b), both...)} {
		if _, err := svc.Import(t.Context(), breachd.Breach{Name: name, Title: name}, batches(ds)); err != nil {
			t.Fatal(err)
		}
	}
	order := []breachd.Digest{storetest.Digests("absent", 1)[0], a[0], both[0], b[0], a[1], both[1]}
	var packed []byte
	for _, d := range order {
		packed = append(packed, d[:]...)
	}
	got, err := svc.CheckBatch(t.Context(), packed)
	if err != nil {
		t.Fatal(err)
	}
	sets := [][]string{}
	for _, s := range got.Sets {
		var names []string
		for _, e := range s {
			names = append(names, e.Name)
		}
		sets = append(sets, names)
	}
	wantSets := [][]string{{"Alpha"}, {"Alpha", "Beta"}, {"Beta"}}
	if got.Count != 6 || got.CorpusVersion != 2 || !slices.Equal(got.Exposed, []uint32{1, 2, 3, 4, 5}) ||
		!slices.Equal(got.SetOf, []uint32{0, 1, 2, 0, 1}) || fmt.Sprint(sets) != fmt.Sprint(wantSets) {
		t.Fatalf("CheckBatch = %+v with sets %v", got, sets)
	}
	if _, err := svc.CheckBatch(t.Context(), packed[:33]); !errors.Is(err, breachd.ErrInvalidBatch) {
		t.Fatalf("CheckBatch(33 bytes) = %v, want ErrInvalidBatch", err)
	}
}

func TestListBreaches(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	var all []string
	for i := range 12 {
		name := fmt.Sprintf("B%02d", i)
		if _, err := svc.Import(t.Context(), breachd.Breach{Name: name, Title: name}, batches(storetest.Digests(name, 1))); err != nil {
			t.Fatal(err)
		}
		all = append(all, name)
	}
	// Pages of 5 follow each other; a breach added between two pages that
	// sorts after the last name returned shows up in a later page.
	var got []string
	tok := ""
	for i := 0; ; i++ {
		page, err := svc.ListBreaches(t.Context(), service.PageRequest{Size: 5, Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page.Breaches {
			got = append(got, b.Name)
		}
		if i == 0 {
			if _, err := svc.Import(t.Context(), breachd.Breach{Name: "C", Title: "C"}, batches(storetest.Digests("c", 1))); err != nil {
				t.Fatal(err)
			}
		}
		if tok = page.NextToken; tok == "" {
			break
		}
	}
	if want := append(all, "C"); !slices.Equal(got, want) {
		t.Fatalf("pages = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		req  service.PageRequest
		want string
	}{
		{service.PageRequest{Size: -1}, "page_size: got -1"},
		{service.PageRequest{Token: "!!"}, "page_token: \"!!\" is not a token"},
		{service.PageRequest{Token: strings.Repeat("A", 10_000)}, "(10000 bytes)"},
	} {
		_, err := svc.ListBreaches(t.Context(), tc.req)
		if !errors.Is(err, breachd.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ListBreaches(%+v) = %v, want ErrInvalidArgument containing %q", tc.req, err, tc.want)
		}
	}
}

// FuzzPageToken feeds arbitrary tokens to ListBreaches: each is either
// refused as invalid or answers a page of names after some name.
func FuzzPageToken(f *testing.F) {
	svc, _ := newService(f)
	for _, name := range []string{"A", "M", "Z"} {
		if _, err := svc.Import(context.Background(), breachd.Breach{Name: name, Title: name}, batches(storetest.Digests(name, 1))); err != nil {
			f.Fatal(err)
		}
	}
	page, err := svc.ListBreaches(context.Background(), service.PageRequest{Size: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(page.NextToken)
	f.Add("")
	f.Add("bjE6")     // "n1:" and no name
	f.Add("bjE6Li4v") // "n1:..."
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := svc.ListBreaches(context.Background(), service.PageRequest{Size: 2, Token: tok})
		if err != nil {
			if !errors.Is(err, breachd.ErrInvalidArgument) || len(err.Error()) > 300 {
				t.Fatalf("ListBreaches(token %q) = %v", tok, err)
			}
			return
		}
		if len(p.Breaches) > 2 {
			t.Fatalf("page of %d, asked for 2", len(p.Breaches))
		}
	})
}

// TestOpeningAndReadOnly: until its corpus is open, every use case answers
// UNAVAILABLE ("still opening"); once open, answers come; a read replica's
// service refuses every change, of emails and passwords, with the reason
// it is given, and still answers.
func TestOpeningAndReadOnly(t *testing.T) {
	t.Parallel()
	o := store.DefaultOptions()
	o.ExpectedKeys = 1024
	ctx := t.Context()
	st, err := store.Open(ctx, t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pw, err := store.OpenPasswords(ctx, t.TempDir(), breachd.SHA1, o)
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	a := storetest.Digests("a", 10)
	if _, err := st.Import(ctx, storetest.Breach("Alpha"), storetest.Batches(a, 10, nil)); err != nil {
		t.Fatal(err)
	}

	svc := service.New(nil, service.WithPasswords(breachd.SHA1, nil))
	h, _ := breachd.PasswordHashFromBytes(breachd.SHA1, a[0][:20])
	opening := map[string]error{}
	_, opening["Check"] = svc.Check(ctx, a[0])
	_, opening["CheckBatch"] = svc.CheckBatch(ctx, a[0][:])
	_, opening["ListBreaches"] = svc.ListBreaches(ctx, service.PageRequest{})
	_, _, opening["GetBreach"] = svc.GetBreach(ctx, "Alpha")
	_, opening["Import"] = svc.Import(ctx, storetest.Breach("Beta"), storetest.Batches(a, 10, nil))
	_, _, opening["DeleteBreach"] = svc.DeleteBreach(ctx, "Alpha")
	_, opening["CheckPassword"] = svc.CheckPassword(ctx, h)
	for call, err := range opening {
		if !errors.Is(err, service.ErrOpening) || !errors.Is(err, breachd.ErrUnavailable) {
			t.Errorf("%s while opening = %v, want UNAVAILABLE, still opening", call, err)
		}
	}
	svc.Open(st)
	svc.OpenPasswords(breachd.SHA1, pw)
	if e, err := svc.Check(ctx, a[0]); err != nil || len(e.Breaches) != 1 {
		t.Fatalf("Check once open = %+v, %v", e, err)
	}
	if _, err := svc.CheckPassword(ctx, h); err != nil {
		t.Fatalf("CheckPassword once open = %v", err)
	}

	errReplica := breachd.Errorf(breachd.ErrFailedPrecondition, "a replica: import on the writer")
	ro := service.New(st, service.WithPasswords(breachd.SHA1, pw), service.WithReadOnly(func() error { return errReplica }))
	refused := map[string]error{}
	_, refused["Import"] = ro.Import(ctx, storetest.Breach("Beta"), storetest.Batches(a, 10, nil))
	_, _, refused["DeleteBreach"] = ro.DeleteBreach(ctx, "Alpha")
	_, _, refused["UpdateBreach"] = ro.UpdateBreach(ctx, storetest.Breach("Alpha"))
	_, refused["ImportPasswords"] = ro.ImportPasswords(ctx, breachd.SHA1, storetest.Breach("PP"), 0, func(yield func([]breachd.PasswordRecord, error) bool) {})
	for call, err := range refused {
		if err != errReplica {
			t.Errorf("%s on a replica = %v, want its refusal", call, err)
		}
	}
	if e, err := ro.Check(ctx, a[0]); err != nil || len(e.Breaches) != 1 {
		t.Fatalf("Check on a replica = %+v, %v", e, err)
	}
	if v := st.Version(); v != 1 {
		t.Fatalf("version %d after refused changes, want 1", v)
	}
}

// TestBreachNameCase: names are found whatever their case, as upstream's
// API finds them, so a new breach may not differ from one held only in
// case; changes name the breach meant when they miss.
func TestBreachNameCase(t *testing.T) {
	t.Parallel()
	svc, emails, _, _ := pairService(t)
	ds := storetest.Digests("case", 20)
	if _, err := svc.Import(t.Context(), breachd.Breach{Name: "LinkedIn", Title: "LinkedIn"}, batches(ds[:10])); err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name string
		run  func(b breachd.Breach) error
	}{
		{"emails", func(b breachd.Breach) error { _, err := svc.Import(t.Context(), b, batches(ds[10:])); return err }},
		{"pairs", func(b breachd.Breach) error {
			_, err := svc.ImportPairs(t.Context(), b, combolist(ds[10:], nil))
			return err
		}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(breachd.Breach{Name: "linkedin", Title: "x"})
			if !errors.Is(err, breachd.ErrAlreadyExists) || !strings.Contains(err.Error(), `the corpus has "LinkedIn"`) {
				t.Fatalf("import into linkedin = %v, want ALREADY_EXISTS naming LinkedIn", err)
			}
			if bs, v, _ := emails.Breaches(t.Context()); len(bs) != 1 || v != 1 {
				t.Fatalf("after the refusal: %d breaches at version %d, want LinkedIn alone at 1", len(bs), v)
			}
		})
	}
	// The name held takes more accounts.
	if s, err := svc.Import(t.Context(), breachd.Breach{Name: "LinkedIn", Title: "LinkedIn"}, batches(ds[10:])); err != nil || s.NewAccounts != 10 {
		t.Fatalf("Import into LinkedIn = %+v, %v", s, err)
	}
	for _, name := range []string{"LinkedIn", "linkedin", "LINKEDIN"} {
		if b, _, err := svc.GetBreach(t.Context(), name); err != nil || b.Name != "LinkedIn" || b.AccountCount != 20 {
			t.Fatalf("GetBreach(%s) = %+v, %v; want LinkedIn with 20 accounts", name, b, err)
		}
	}
	if _, _, err := svc.GetBreach(t.Context(), "Linked-In"); !errors.Is(err, breachd.ErrUnknownBreach) || strings.Contains(err.Error(), "the corpus has") {
		t.Fatalf("GetBreach(Linked-In) = %v, want an unknown breach with no suggestion", err)
	}
	// A change must name the breach exactly: a miss says which it meant.
	if _, _, err := svc.DeleteBreach(t.Context(), "linkedin"); !errors.Is(err, breachd.ErrUnknownBreach) || !strings.Contains(err.Error(), `the corpus has "LinkedIn"`) {
		t.Fatalf("DeleteBreach(linkedin) = %v, want unknown, naming LinkedIn", err)
	}
	if _, _, err := svc.UpdateBreach(t.Context(), breachd.Breach{Name: "linkedin", Title: "y"}); !errors.Is(err, breachd.ErrNotFound) || !strings.Contains(err.Error(), `the corpus has "LinkedIn"`) {
		t.Fatalf("UpdateBreach(linkedin) = %v, want not found, naming LinkedIn", err)
	}
	if bs, _, _ := emails.Breaches(t.Context()); len(bs) != 1 || bs[0].AccountCount != 20 {
		t.Fatalf("catalogue after the misses = %+v, want LinkedIn with 20 accounts", bs)
	}
}
