package auth

import (
	"github.com/breachd/breachd"
)

// UseCase is what a caller asks of the daemon, whatever the transport: the
// gRPC guard and the HTTP face each map their methods and routes to one,
// and both admit it by the same Policy.
type UseCase string

// The use cases.
const (
	UseCheck           UseCase = "check"            // one account
	UseCheckBulk       UseCase = "check-bulk"       // a stream of batches of accounts
	UseCheckPrivate    UseCase = "check-private"    // one account, the server learning only its bucket
	UseCatalogue       UseCase = "catalogue"        // the breach catalogue
	UseCheckPassword   UseCase = "check-password"   // one password hash
	UsePasswordRange   UseCase = "password-range"   // the hashes under a prefix (k-anonymity)
	UseChangeCorpus    UseCase = "change-corpus"    // import, delete, correct a breach
	UseImportPasswords UseCase = "import-passwords" // import a password release
	UseAssess          UseCase = "assess"           // one account (and its password's hash): facts and a decision
	UseWatch           UseCase = "watch"            // watchlists, their events and deliveries
)

// Cost says how a use case is charged to the caller's quota.
type Cost int

const (
	// Free use cases charge nothing (the admin's, which the import lock
	// already serialises).
	Free Cost = iota
	// PerCall charges one token when the call is admitted.
	PerCall
	// PerItem charges each batch its item count as it arrives (the
	// transport charges it, pacing the stream).
	PerItem
)

// Rule is what a use case asks of its caller.
type Rule struct {
	Scope Scope
	Cost  Cost
	// Public use cases may be answered to callers without a credential
	// where the daemon opens them (http.open_public, as Have I Been Pwned's
	// range API and catalogue are open upstream).
	Public bool
	// Audit: every admitted call is logged in full (principal, peer, what).
	Audit bool
}

// Policy is who may call what, at what cost: the one table both faces
// follow.
var Policy = map[UseCase]Rule{
	UseCheck:           {Scope: ScopeCheck, Cost: PerCall},
	UseCheckBulk:       {Scope: ScopeBulk, Cost: PerItem},
	UseCheckPrivate:    {Scope: ScopeCheck, Cost: PerCall},
	UseCatalogue:       {Scope: ScopeCheck, Cost: PerCall, Public: true},
	UseCheckPassword:   {Scope: ScopeCheck, Cost: PerCall},
	UsePasswordRange:   {Scope: ScopeCheck, Cost: PerCall, Public: true},
	UseChangeCorpus:    {Scope: ScopeAdmin, Cost: Free, Audit: true},
	UseImportPasswords: {Scope: ScopeAdmin, Cost: Free, Audit: true},
	UseAssess:          {Scope: ScopeCheck, Cost: PerCall},
	UseWatch:           {Scope: ScopeAdmin, Cost: Free, Audit: true},
}

// RuleFor returns the rule of use case uc; what names the method or route
// asking, for the refusal when the table names no rule: such a call is
// open to no one.
func RuleFor(uc UseCase, what string) (Rule, error) {
	r, ok := Policy[uc]
	if !ok {
		return Rule{}, breachd.Errorf(breachd.ErrPermissionDenied, "%s is not open to anyone", breachd.Quote(what))
	}
	return r, nil
}

// Anonymous reports whether the rule lets a caller without a credential
// in, where the daemon opens public use cases (openPublic).
func (r Rule) Anonymous(openPublic bool) bool { return r.Public && openPublic }

// Admit checks that principal p may run the rule's use case (as what, for
// the message): nil, or an error of kind ErrPermissionDenied.
func (r Rule) Admit(p *Principal, what string) error { return Require(p, r.Scope, what) }
