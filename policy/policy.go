package policy

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/breachd/breachd"
)

// Mode says whether a policy's decisions are answered or only reported.
type Mode uint8

const (
	Enforce Mode = iota
	// ReportOnly computes and records each decision but answers allow:
	// the way to roll a policy out.
	ReportOnly
)

func (m Mode) String() string {
	if m == ReportOnly {
		return "report-only"
	}
	return "enforce"
}

// ParseMode parses "enforce" or "report-only" ("" is enforce).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "enforce":
		return Enforce, nil
	case "report-only":
		return ReportOnly, nil
	}
	return 0, fmt.Errorf("mode %s: want enforce or report-only", breachd.Quote(s))
}

// Conditions are what a rule asks of an assessment; every condition set
// must hold for the rule to fire (a rule with none always fires).
type Conditions struct {
	// EmailExposed: the account is (true) or is not (false) in a breach.
	EmailExposed *bool
	// PairExposed: the account with this password is in a breach.
	PairExposed *bool
	// PasswordUnknown: the account is in a breach whose passwords the
	// corpus does not hold (its status is unknown there).
	PasswordUnknown *bool
	// PasswordCountAtLeast (0: no condition): the password was seen at
	// least this often in the password corpus.
	PasswordCountAtLeast uint64
	// BreachedWithin (0: no condition): the account is in a breach whose
	// BreachDate (else AddedDate) is this recent.
	BreachedWithin time.Duration
	// Contexts (empty: any): the assessment's context is one of these.
	Contexts []breachd.AssessContext
}

// Rule is one rule of a policy.
type Rule struct {
	Name     string
	When     Conditions
	Decision breachd.Decision
}

// Policy is an ordered list of rules and a mode.
type Policy struct {
	Mode  Mode
	Rules []Rule
}

// Validate reports the first problem with p: a rule without a name, or two
// rules of one name (reasons name rules, so names must tell them apart).
func (p *Policy) Validate() error {
	seen := map[string]bool{}
	for i, r := range p.Rules {
		switch {
		case r.Name == "":
			return fmt.Errorf("rules[%d].name is empty: every rule needs a name (answers give it as a reason)", i)
		case seen[r.Name]:
			return fmt.Errorf("rules[%d].name %s: another rule has that name", i, breachd.Quote(r.Name))
		case r.Decision > breachd.Block:
			return fmt.Errorf("rules[%d].decision %d is unknown", i, r.Decision)
		}
		seen[r.Name] = true
	}
	return nil
}

// Options configure a Set.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: no metrics
	Now        func() time.Time      // nil: time.Now
}

// Set is the daemon's policies: a default and one per principal that has
// its own. It implements the service's Decider.
type Set struct {
	def         Policy
	byPrincipal map[string]Policy
	log         *slog.Logger
	now         func() time.Time
	decisions   *prometheus.CounterVec
	fired       *prometheus.CounterVec
}

// New returns the set of policies def (for every principal not in
// byPrincipal) and byPrincipal, or the first problem with one of them.
func New(def Policy, byPrincipal map[string]Policy, opts Options) (*Set, error) {
	if err := def.Validate(); err != nil {
		return nil, fmt.Errorf("policy.%w", err)
	}
	for name, p := range byPrincipal {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("policy.principals.%s.%w", name, err)
		}
	}
	s := &Set{def: def, byPrincipal: byPrincipal, log: opts.Logger, now: opts.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "breachd_assess_decisions_total",
		Help: "Assessments by the decision their policy drew (in report-only mode: what enforcing would have answered) and mode."},
		[]string{"decision", "mode"})
	s.fired = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "breachd_assess_rules_fired_total",
		Help: "Policy rules that fired, by rule name and mode."}, []string{"rule", "mode"})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.decisions, s.fired} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Decide evaluates the policy of req's principal over a's facts and
// records the decision in a.
func (s *Set) Decide(req *breachd.AssessRequest, a *breachd.Assessment) {
	p, ok := s.byPrincipal[req.Principal]
	if !ok {
		p = s.def
	}
	decision, now := breachd.Allow, s.now()
	a.Reasons = a.Reasons[:0]
	for i := range p.Rules {
		r := &p.Rules[i]
		if !r.When.hold(req, a, now) {
			continue
		}
		a.Reasons = append(a.Reasons, r.Name)
		decision = max(decision, r.Decision)
		s.fired.WithLabelValues(r.Name, p.Mode.String()).Inc()
	}
	s.decisions.WithLabelValues(decision.String(), p.Mode.String()).Inc()
	a.WouldBe, a.Decision, a.Enforced = decision, decision, p.Mode == Enforce
	if p.Mode == ReportOnly {
		a.Decision = breachd.Allow
		if decision != breachd.Allow {
			// An audit line without identifiers, at debug: one a call
			// would flood an info log (the metrics count them all).
			s.log.Debug("assessment (report-only)", "principal", req.Principal, "context", req.Context.String(),
				"would_be", decision.String(), "rules", a.Reasons, "breaches", len(a.Breaches))
		}
	}
}

// hold reports whether every condition set in c holds.
func (c *Conditions) hold(req *breachd.AssessRequest, a *breachd.Assessment, now time.Time) bool {
	if len(c.Contexts) > 0 && !slices.Contains(c.Contexts, req.Context) {
		return false
	}
	if c.EmailExposed != nil && *c.EmailExposed != (len(a.Breaches) > 0) {
		return false
	}
	if c.PairExposed != nil && *c.PairExposed != anyStatus(a, breachd.PasswordExposed) {
		return false
	}
	if c.PasswordUnknown != nil && *c.PasswordUnknown != anyStatus(a, breachd.PasswordUnknown) {
		return false
	}
	if c.PasswordCountAtLeast > 0 && a.PasswordCount < c.PasswordCountAtLeast {
		return false
	}
	if c.BreachedWithin > 0 && !breachedSince(a, now.Add(-c.BreachedWithin)) {
		return false
	}
	return true
}

func anyStatus(a *breachd.Assessment, st breachd.PasswordStatus) bool {
	for _, b := range a.Breaches {
		if b.Password == st {
			return true
		}
	}
	return false
}

// breachedSince reports whether a breach of a's happened at or after t:
// its BreachDate, or when it was added if it has none.
func breachedSince(a *breachd.Assessment, t time.Time) bool {
	for _, b := range a.Breaches {
		when := b.AddedDate
		if d, err := time.Parse(time.DateOnly, b.BreachDate); err == nil {
			when = d
		}
		if !when.IsZero() && !when.Before(t) {
			return true
		}
	}
	return false
}
