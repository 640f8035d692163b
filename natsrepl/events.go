package natsrepl

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/webhook"
)

// Exposure events on NATS: the writer publishes each event of its outbox
// to JetStream, subject EventSubjectPrefix + the watchlist, in the stream
// EventStream (made if missing), with the event's id as Nats-Msg-Id so
// that JetStream drops a repeat within its duplicate window.
const (
	EventStream        = "BREACHD_EVENTS"
	EventSubjectPrefix = "breachd.events."
)

// EventTarget publishes exposure events to JetStream (a webhook.Target).
type EventTarget struct {
	o  Options
	mu sync.Mutex
	nc *nats.Conn
	js jetstream.JetStream
}

// NewEventTarget returns a target on o's cluster; it connects at its
// first event, and again after a failure.
func NewEventTarget(o Options) *EventTarget {
	o.defaults()
	return &EventTarget{o: o}
}

// Name is its cursor's key.
func (t *EventTarget) Name() string { return "nats:" + EventStream }

// Send publishes e and waits for JetStream's acknowledgement.
func (t *EventTarget) Send(ctx context.Context, e breachd.OutboxEvent) error {
	js, err := t.conn(ctx)
	if err != nil {
		return err
	}
	subject := EventSubjectPrefix + e.Watchlist
	if strings.HasSuffix(subject, ".") || strings.Contains(subject, "..") {
		// Published, it would go unanswered until the timeout, every try.
		// Undeliverable: dead-lettered at once, not retried while the
		// other watchlists' events wait behind it.
		return fmt.Errorf("%w: watchlist %s: its name ends in '.' or holds \"..\", so its events have no NATS subject (%q): move its accounts to a watchlist named otherwise",
			webhook.ErrUndeliverable, e.Watchlist, subject)
	}
	m := nats.NewMsg(subject)
	m.Data = e.Body
	m.Header.Set(jetstream.MsgIDHeader, e.ID)
	m.Header.Set("Content-Type", "application/cloudevents+json")
	_, err = js.PublishMsg(ctx, m)
	return err
}

func (t *EventTarget) conn(ctx context.Context) (jetstream.JetStream, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.js != nil {
		return t.js, nil
	}
	nc, js, err := dial("breachd events", t.o)
	if err != nil {
		return nil, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: EventStream, Subjects: []string{EventSubjectPrefix + ">"},
		Replicas: t.o.Replicas, Description: "breachd exposure events (CloudEvents 1.0 JSON), one subject per watchlist"}); err != nil {
		nc.Close()
		return nil, err
	}
	t.nc, t.js = nc, js
	return js, nil
}

// Close closes its connection.
func (t *EventTarget) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nc != nil {
		t.nc.Close()
		t.nc, t.js = nil, nil
	}
}
