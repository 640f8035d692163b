package natsrepl_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
	"github.com/breachd/breachd/webhook"
)

// openOutbox opens an email corpus and its watchlists (and their outbox)
// in a directory of the test's, closed when it ends.
func openOutbox(t *testing.T) (*store.Store, *store.Watchlists) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	o := storeOptions()
	o.ExpectedKeys = 10000
	emails, err := store.Open(ctx, store.EmailDir(dir), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emails.Close() })
	w, err := store.OpenWatchlists(ctx, store.WatchDir(dir), emails, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return emails, w
}

// TestEventTarget: a real outbox's events reach JetStream on the
// watchlist's subject, in order, each once, with its id as Nats-Msg-Id; a
// sender started again sends nothing twice (its cursor), and a repeat
// within the duplicate window would be dropped by JetStream.
func TestEventTarget(t *testing.T) {
	ctx := context.Background()
	url := startSingle(t).url()
	emails, w := openOutbox(t)
	users := storetest.Digests("users", 2500)
	w.Create(ctx, "users")
	if _, err := w.Add(ctx, "users", storetest.Batches(users, 1000, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := emails.Import(ctx, storetest.Breach("Sega"), storetest.Batches(users[:2100], 1000, nil)); err != nil {
		t.Fatal(err)
	}
	if st, err := w.Reconcile(ctx); err != nil || st.Events != 3 {
		t.Fatalf("Reconcile = %+v, %v", st, err)
	}
	target := natsrepl.NewEventTarget(natsrepl.Options{URL: url})
	defer target.Close()
	send := func() {
		sctx, cancel := context.WithCancel(ctx)
		sender, err := webhook.New(w, []webhook.Target{target}, webhook.Options{Poll: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { sender.Run(sctx); close(done) }()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if c, _ := w.Cursor(ctx, target.Name()); c == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the events did not reach NATS")
			}
		}
		cancel()
		<-done
	}
	send()
	send() // again: nothing new

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(ctx, natsrepl.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := stream.Info(ctx)
	if info.State.Msgs != 3 {
		t.Fatalf("the stream holds %d events, want 3", info.State.Msgs)
	}
	evs, _ := w.EventsAfter(ctx, "", 0, 10)
	var accounts int
	for i := range 3 {
		m, err := stream.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		var ev breachd.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if m.Subject != natsrepl.EventSubjectPrefix+"users" || m.Header.Get(jetstream.MsgIDHeader) != evs[i].ID || ev.ID != evs[i].ID {
			t.Fatalf("message %d: subject %s, id %s; want event %s", i, m.Subject, m.Header.Get(jetstream.MsgIDHeader), evs[i].ID)
		}
		accounts += len(ev.Data.Accounts)
	}
	if accounts != 2100 {
		t.Fatalf("%d accounts on NATS, want 2100", accounts)
	}
	// A repeat (a crash between publishing and recording it) is dropped.
	if err := target.Send(ctx, evs[0]); err != nil {
		t.Fatal(err)
	}
	if info, _ := stream.Info(ctx); info.State.Msgs != 3 {
		t.Fatalf("a repeated event was stored again: %d messages", info.State.Msgs)
	}
}

// TestEventTargetBadSubject: a watchlist made before names were checked
// for it, whose name ends in '.', has no NATS subject. Its events are
// dead-lettered at the first attempt, saying why, and the events behind
// them go out at once: they used to wait out each of its events' retry
// period (a publish nobody answers), 24 hours by default.
func TestEventTargetBadSubject(t *testing.T) {
	ctx := context.Background()
	url := startSingle(t).url()
	emails, w := openOutbox(t)
	users := storetest.Digests("users", 100)
	for _, name := range []string{"old.", "users"} { // the store takes what the service now refuses
		if _, err := w.Create(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Add(ctx, name, storetest.Batches(users, 100, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := emails.Import(ctx, storetest.Breach("Sega"), storetest.Batches(users, 100, nil)); err != nil {
		t.Fatal(err)
	}
	if st, err := w.Reconcile(ctx); err != nil || st.Events != 2 {
		t.Fatalf("Reconcile = %+v, %v", st, err)
	}
	target := natsrepl.NewEventTarget(natsrepl.Options{URL: url})
	defer target.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sender, err := webhook.New(w, []webhook.Target{target}, webhook.Options{Poll: 20 * time.Millisecond, RetryFor: time.Hour, MinBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go sender.Run(sctx)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, _ := w.Cursor(ctx, target.Name()); c == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the events did not go out: the bad subject's event held them up")
		}
	}
	ds, err := w.Deliveries(ctx, []string{target.Name()})
	if err != nil {
		t.Fatal(err)
	}
	if dl := ds[0].DeadLetters; len(dl) != 1 || dl[0].Watchlist != "old." || dl[0].Attempts != 1 || !strings.Contains(dl[0].Error, "have no NATS subject") {
		t.Fatalf("dead letters %+v, want old.'s one event, at its first attempt, saying why", dl)
	}
}
