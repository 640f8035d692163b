package auth_test

import (
	"errors"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
)

// TestPolicy pins who may call what at what cost: the one table the gRPC
// guard and the HTTP face both follow.
func TestPolicy(t *testing.T) {
	t.Parallel()
	checker := &auth.Principal{Name: "c", Scopes: []auth.Scope{auth.ScopeCheck}}
	bulker := &auth.Principal{Name: "b", Scopes: []auth.Scope{auth.ScopeBulk}}
	admin := &auth.Principal{Name: "a", Scopes: []auth.Scope{auth.ScopeAdmin}}
	for _, tc := range []struct {
		uc          auth.UseCase
		cost        auth.Cost
		public      bool
		audit       bool
		may, mayNot *auth.Principal
	}{
		{auth.UseCheck, auth.PerCall, false, false, checker, bulker},
		{auth.UseCheckBulk, auth.PerItem, false, false, bulker, checker},
		{auth.UseCatalogue, auth.PerCall, true, false, checker, admin},
		{auth.UseCheckPassword, auth.PerCall, false, false, checker, bulker},
		{auth.UsePasswordRange, auth.PerCall, true, false, checker, bulker},
		{auth.UseChangeCorpus, auth.Free, false, true, admin, checker},
		{auth.UseImportPasswords, auth.Free, false, true, admin, checker},
	} {
		t.Run(string(tc.uc), func(t *testing.T) {
			r, err := auth.RuleFor(tc.uc, "call")
			if err != nil {
				t.Fatal(err)
			}
			if r.Cost != tc.cost || r.Public != tc.public || r.Audit != tc.audit {
				t.Errorf("rule = %+v, want cost %d, public %v, audit %v", r, tc.cost, tc.public, tc.audit)
			}
			if r.Anonymous(true) != tc.public || r.Anonymous(false) {
				t.Errorf("Anonymous(open) = %v, Anonymous(closed) = %v; want %v, false", r.Anonymous(true), r.Anonymous(false), tc.public)
			}
			if err := r.Admit(tc.may, "call"); err != nil {
				t.Errorf("Admit(%s) = %v", tc.may.Name, err)
			}
			if err := r.Admit(tc.mayNot, "call"); !errors.Is(err, breachd.ErrPermissionDenied) {
				t.Errorf("Admit(%s) = %v, want permission denied", tc.mayNot.Name, err)
			}
		})
	}
	if _, err := auth.RuleFor("unknown", "/x.Y/Z"); !errors.Is(err, breachd.ErrPermissionDenied) {
		t.Errorf("RuleFor(unknown) = %v, want permission denied: a use case the table does not name is open to no one", err)
	}
}
