package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/policy"
)

func yes() *bool { b := true; return &b }

// The example policy of the README.
var rules = []policy.Rule{
	{Name: "pair-exposed", When: policy.Conditions{PairExposed: yes()}, Decision: breachd.Reset},
	{Name: "common-password-signup", When: policy.Conditions{PasswordCountAtLeast: 100,
		Contexts: []breachd.AssessContext{breachd.ContextSignup, breachd.ContextPasswordChange}}, Decision: breachd.Block},
	{Name: "common-password-login", When: policy.Conditions{PasswordCountAtLeast: 100,
		Contexts: []breachd.AssessContext{breachd.ContextLogin}}, Decision: breachd.StepUp},
	{Name: "recent-breach", When: policy.Conditions{BreachedWithin: 90 * 24 * time.Hour}, Decision: breachd.Warn},
}

func entry(name, date string, st breachd.PasswordStatus) breachd.BreachExposure {
	return breachd.BreachExposure{CatalogEntry: &breachd.CatalogEntry{Breach: breachd.Breach{Name: name, BreachDate: date}}, Password: st}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	old, recent := "2011-06-17", "2026-11-01"
	tests := []struct {
		name     string
		ctx      breachd.AssessContext
		a        breachd.Assessment
		decision breachd.Decision
		reasons  string
	}{
		{"clean account, rare password", breachd.ContextSignup, breachd.Assessment{PasswordCount: 3}, breachd.Allow, ""},
		{"old breach, password unknown", breachd.ContextLogin,
			breachd.Assessment{Breaches: []breachd.BreachExposure{entry("SegaPass", old, breachd.PasswordUnknown)}}, breachd.Allow, ""},
		{"pair exposed", breachd.ContextLogin,
			breachd.Assessment{Breaches: []breachd.BreachExposure{entry("Combo", old, breachd.PasswordExposed)}}, breachd.Reset, "pair-exposed"},
		{"common password at signup", breachd.ContextSignup, breachd.Assessment{PasswordCount: 100}, breachd.Block, "common-password-signup"},
		{"common password at login", breachd.ContextLogin, breachd.Assessment{PasswordCount: 5000}, breachd.StepUp, "common-password-login"},
		{"recent breach", breachd.ContextLogin,
			breachd.Assessment{Breaches: []breachd.BreachExposure{entry("New", recent, breachd.PasswordNotExposed)}}, breachd.Warn, "recent-breach"},
		{"several fire: the strictest wins, all are reasons", breachd.ContextLogin,
			breachd.Assessment{PasswordCount: 100, Breaches: []breachd.BreachExposure{entry("New", recent, breachd.PasswordExposed)}},
			breachd.Reset, "pair-exposed,common-password-login,recent-breach"},
	}
	for _, mode := range []policy.Mode{policy.Enforce, policy.ReportOnly} {
		reg := prometheus.NewRegistry()
		s, err := policy.New(policy.Policy{Mode: mode, Rules: rules}, nil, policy.Options{Registerer: reg, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run(mode.String()+"/"+tt.name, func(t *testing.T) {
				a := tt.a
				s.Decide(&breachd.AssessRequest{Context: tt.ctx}, &a)
				want := tt.decision
				if mode == policy.ReportOnly {
					want = breachd.Allow
				}
				if a.Decision != want || a.WouldBe != tt.decision || a.Enforced != (mode == policy.Enforce) {
					t.Errorf("decision %s (would be %s, enforced %v); want %s (would be %s)", a.Decision, a.WouldBe, a.Enforced, want, tt.decision)
				}
				if got := strings.Join(a.Reasons, ","); got != tt.reasons {
					t.Errorf("reasons %q, want %q", got, tt.reasons)
				}
			})
		}
		// The metrics count what the policy decided, enforced or not.
		if v := counter(t, reg, "breachd_assess_decisions_total", "reset", mode); v != 2 {
			t.Errorf("%s: reset decisions counted %v, want 2", mode, v)
		}
	}
}

// counter reads name{decision, mode} from reg.
func counter(t *testing.T, reg *prometheus.Registry, name, decision string, mode policy.Mode) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["decision"] == decision && labels["mode"] == mode.String() {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{decision=%s,mode=%s}", name, decision, mode)
	return 0
}

func TestPerPrincipal(t *testing.T) {
	strict := policy.Policy{Rules: []policy.Rule{{Name: "any-breach", When: policy.Conditions{EmailExposed: yes()}, Decision: breachd.Block}}}
	s, err := policy.New(policy.Policy{Mode: policy.ReportOnly, Rules: strict.Rules}, map[string]policy.Policy{"signup": strict}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	exposed := breachd.Assessment{Breaches: []breachd.BreachExposure{entry("SegaPass", "2011-06-17", breachd.PasswordUnknown)}}
	for principal, want := range map[string]breachd.Decision{"signup": breachd.Block, "sso": breachd.Allow} {
		a := exposed
		s.Decide(&breachd.AssessRequest{Principal: principal}, &a)
		if a.Decision != want || a.WouldBe != breachd.Block {
			t.Errorf("%s: %s (would be %s), want %s", principal, a.Decision, a.WouldBe, want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []policy.Policy{
		{Rules: []policy.Rule{{Decision: breachd.Block}}},
		{Rules: []policy.Rule{{Name: "a"}, {Name: "a"}}},
	} {
		if _, err := policy.New(p, nil, policy.Options{}); err == nil || !strings.HasPrefix(err.Error(), "policy.rules[") {
			t.Errorf("New(%+v) = %v; want an error naming the rule", p, err)
		}
	}
}
