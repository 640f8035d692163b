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
	}
	if !b.AddedDate.IsZero() {
		p.AddedDate = timestamppb.New(b.AddedDate)
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
	}}
	if p.GetAddedDate() != nil {
		e.AddedDate = p.GetAddedDate().AsTime()
	}
	return e
}
