package breachdv1

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/breachd/breachd"
)

// This file is written by hand (make proto leaves it alone): conversions
// between the wire form and breachd's domain types, shared by the server and
// the client library so that both read and write a breach the same way.

// BreachFromDomain returns the wire form of a breach record.
func BreachFromDomain(b *breachd.Breach) *Breach {
	p := &Breach{
		Name: b.Name, Title: b.Title, Domain: b.Domain, BreachDate: b.BreachDate,
		PwnCount: b.PwnCount, Description: b.Description, DataClasses: b.DataClasses,
		IsVerified: b.IsVerified, IsSensitive: b.IsSensitive,
		LogoPath: b.LogoPath, Attribution: b.Attribution, DisclosureUrl: b.DisclosureURL,
		IsFabricated: b.IsFabricated, IsRetired: b.IsRetired, IsSpamList: b.IsSpamList,
		IsMalware: b.IsMalware, IsSubscriptionFree: b.IsSubscriptionFree, IsStealerLog: b.IsStealerLog,
		PasswordsPublished: b.PasswordsPublished,
	}
	if !b.AddedDate.IsZero() {
		p.AddedDate = timestamppb.New(b.AddedDate)
	}
	if !b.ModifiedDate.IsZero() {
		p.ModifiedDate = timestamppb.New(b.ModifiedDate)
	}
	return p
}

// EntryFromDomain returns the wire form of a catalogue entry.
func EntryFromDomain(e *breachd.CatalogEntry) *Breach {
	p := BreachFromDomain(&e.Breach)
	p.AccountCount = e.AccountCount
	return p
}

// ToDomain returns the catalogue entry p describes (the record is not validated).
func (p *Breach) ToDomain() breachd.CatalogEntry {
	e := breachd.CatalogEntry{AccountCount: p.GetAccountCount(), Breach: breachd.Breach{
		Name: p.GetName(), Title: p.GetTitle(), Domain: p.GetDomain(), BreachDate: p.GetBreachDate(),
		PwnCount: p.GetPwnCount(), Description: p.GetDescription(), DataClasses: p.GetDataClasses(),
		IsVerified: p.GetIsVerified(), IsSensitive: p.GetIsSensitive(),
		LogoPath: p.GetLogoPath(), Attribution: p.GetAttribution(), DisclosureURL: p.GetDisclosureUrl(),
		IsFabricated: p.GetIsFabricated(), IsRetired: p.GetIsRetired(), IsSpamList: p.GetIsSpamList(),
		IsMalware: p.GetIsMalware(), IsSubscriptionFree: p.GetIsSubscriptionFree(), IsStealerLog: p.GetIsStealerLog(),
		PasswordsPublished: p.PasswordsPublished,
	}}
	if p.GetAddedDate() != nil {
		e.AddedDate = p.GetAddedDate().AsTime()
	}
	if p.GetModifiedDate() != nil {
		e.ModifiedDate = p.GetModifiedDate().AsTime()
	}
	return e
}

// KindToDomain returns the domain hash kind (0 for an unknown one).
func KindToDomain(k HashKind) breachd.HashKind {
	switch k {
	case HashKind_HASH_KIND_SHA1:
		return breachd.SHA1
	case HashKind_HASH_KIND_NTLM:
		return breachd.NTLM
	}
	return 0
}

// KindFromDomain returns the wire form of a hash kind.
func KindFromDomain(k breachd.HashKind) HashKind {
	switch k {
	case breachd.SHA1:
		return HashKind_HASH_KIND_SHA1
	case breachd.NTLM:
		return HashKind_HASH_KIND_NTLM
	}
	return HashKind_HASH_KIND_UNSPECIFIED
}

// Assessment conversions: the wire enums are the domain's, one higher (0 is
// each wire enum's UNSPECIFIED).

// ContextToDomain returns the domain form of an assessment context.
func ContextToDomain(c AssessContext) (breachd.AssessContext, bool) {
	if c < AssessContext_ASSESS_CONTEXT_UNSPECIFIED || c > AssessContext_ASSESS_CONTEXT_PASSWORD_CHANGE {
		return 0, false
	}
	return breachd.AssessContext(c), true
}

// ContextFromDomain returns the wire form of an assessment context.
func ContextFromDomain(c breachd.AssessContext) AssessContext { return AssessContext(c) }

// DecisionFromDomain returns the wire form of a decision.
func DecisionFromDomain(d breachd.Decision) Decision { return Decision(d + 1) }

// DecisionToDomain returns the domain form of a decision (UNSPECIFIED is allow).
func DecisionToDomain(d Decision) breachd.Decision { return breachd.Decision(max(int32(d), 1) - 1) }

// StatusFromDomain returns the wire form of a password status.
func StatusFromDomain(s breachd.PasswordStatus) PasswordStatus {
	switch s {
	case breachd.PasswordExposed:
		return PasswordStatus_PASSWORD_STATUS_EXPOSED
	case breachd.PasswordNotExposed:
		return PasswordStatus_PASSWORD_STATUS_NOT_EXPOSED
	}
	return PasswordStatus_PASSWORD_STATUS_UNKNOWN
}

// StatusToDomain returns the domain form of a password status.
func StatusToDomain(s PasswordStatus) breachd.PasswordStatus {
	switch s {
	case PasswordStatus_PASSWORD_STATUS_EXPOSED:
		return breachd.PasswordExposed
	case PasswordStatus_PASSWORD_STATUS_NOT_EXPOSED:
		return breachd.PasswordNotExposed
	}
	return breachd.PasswordUnknown
}
