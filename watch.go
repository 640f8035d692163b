package breachd

import (
	"encoding/json"
	"time"
)

// CloudEvents types of the exposure events (see Event).
const (
	// EventExposureAdded: accounts of a watchlist that a newly committed
	// import exposes.
	EventExposureAdded = "breachd.exposure.added"
	// EventExposureRemoved: accounts of a watchlist that a deleted breach
	// exposed.
	EventExposureRemoved = "breachd.exposure.removed"
)

// MaxEventAccounts bounds the accounts of one event: a large diff is a
// series of events for one (watchlist, breach).
const MaxEventAccounts = 1000

// Event is an exposure event in CloudEvents 1.0 JSON form: a batch of the
// accounts of watchlist Subject that breach Data.Breach newly exposes, or
// no longer exposes. ID is deterministic: the same event delivered again
// carries the same ID.
type Event struct {
	SpecVersion     string    `json:"specversion"`
	Type            string    `json:"type"`
	Source          string    `json:"source"`
	ID              string    `json:"id"`
	Time            time.Time `json:"time"`
	Subject         string    `json:"subject"`
	DataContentType string    `json:"datacontenttype"`
	Data            EventData `json:"data"`
}

// EventData is an event's data: the breach, the email corpus version at
// which it was computed, and the accounts (hex SHA-256 digests of canonical
// addresses).
type EventData struct {
	Breach        string   `json:"breach"`
	CorpusVersion uint64   `json:"corpus_version"`
	Accounts      []string `json:"accounts"`
}

// OutboxEvent is an event as the outbox holds it: its position (the
// cursor that pages and deliveries advance), and its JSON.
type OutboxEvent struct {
	Seq       uint64
	ID        string
	Watchlist string
	Body      json.RawMessage
}

// Watchlist is a named set of account digests that exposure events are
// computed for.
type Watchlist struct {
	Name     string
	Accounts int64
	Created  time.Time
}

// Delivery is the state of one webhook endpoint: how far it has received
// the outbox, and the events it gave up on.
type Delivery struct {
	Endpoint    string
	Cursor      uint64 // the last event delivered or dead-lettered
	Pending     uint64 // events after Cursor
	DeadLetters []DeadLetter
}

// DeadLetter is an event a webhook endpoint did not accept within the
// retry period.
type DeadLetter struct {
	Seq       uint64    `json:"seq"`
	ID        string    `json:"id"`
	Watchlist string    `json:"watchlist"`
	Attempts  int       `json:"attempts"`
	First     time.Time `json:"first"`
	Last      time.Time `json:"last"`
	Error     string    `json:"error"`
}
