package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/store/storetest"
	"github.com/breachd/breachd/webhook"
)

// outbox makes a real outbox holding events: a watchlist of 3,000
// accounts, 2,500 of which a breach exposes (three events).
func outbox(t *testing.T) *store.Watchlists {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	o := store.DefaultOptions()
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
	if _, err := w.Create(ctx, "users"); err != nil {
		t.Fatal(err)
	}
	users := storetest.Digests("users", 3000)
	if _, err := w.Add(ctx, "users", storetest.Batches(users, 1000, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := emails.Import(ctx, storetest.Breach("Sega"), storetest.Batches(users[:2500], 1000, nil)); err != nil {
		t.Fatal(err)
	}
	if st, err := w.Reconcile(ctx); err != nil || st.Events != 3 {
		t.Fatalf("Reconcile = %+v, %v", st, err)
	}
	return w
}

// receiver checks every signature, refuses the first fail requests, and
// records the ids it accepted in order.
type receiver struct {
	secret []byte
	mu     sync.Mutex
	fail   int
	ids    []string
	bad    int
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := webhook.Verify(r.secret, req.Header, body, 5*time.Minute); err != nil {
		r.bad++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var ev breachd.Event
	if json.Unmarshal(body, &ev) != nil || ev.ID != req.Header.Get("webhook-id") || ev.Type != breachd.EventExposureAdded {
		r.bad++
		http.Error(w, "not the event", http.StatusBadRequest)
		return
	}
	if r.fail > 0 {
		r.fail--
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	r.ids = append(r.ids, ev.ID)
}

func (r *receiver) accepted() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// TestDelivery: a signed, in-order delivery survives refusals by retrying;
// an endpoint that never accepts dead-letters each event after the retry
// period, without holding up the other; a restarted sender starts from
// its cursor and delivers nothing twice.
func TestDelivery(t *testing.T) {
	w := outbox(t)
	secret, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	good := &receiver{secret: secret, fail: 2}
	gs := httptest.NewServer(good)
	defer gs.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) }))
	defer down.Close()
	eps := []webhook.Endpoint{{URL: gs.URL + "/hook?token=x", Secrets: [][]byte{secret}}, {URL: down.URL, Secrets: [][]byte{secret}}}
	o := webhook.Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, RetryFor: 300 * time.Millisecond, Poll: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	s := newSender(t, w, webhook.Hooks(eps, nil), o)
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	var ds []breachd.Delivery
	for {
		ds, err = w.Deliveries(context.Background(), webhook.Names(webhook.Hooks(eps, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if len(good.accepted()) == 3 && ds[1].Cursor == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered: %d accepted, deliveries %+v", len(good.accepted()), ds)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	evs, _ := w.EventsAfter(context.Background(), "", 0, 10)
	for i, id := range good.accepted() {
		if id != evs[i].ID {
			t.Fatalf("delivered out of order: %d is %s, want %s", i, id, evs[i].ID)
		}
	}
	if good.bad != 0 {
		t.Fatalf("%d requests failed verification", good.bad)
	}
	if ds[0].Endpoint != gs.URL+"/hook" || ds[0].Cursor != 3 || ds[0].Pending != 0 || len(ds[0].DeadLetters) != 0 {
		t.Fatalf("the good endpoint: %+v", ds[0])
	}
	if len(ds[1].DeadLetters) != 3 || ds[1].DeadLetters[0].Attempts < 2 || ds[1].DeadLetters[0].ID != evs[0].ID {
		t.Fatalf("the endpoint that is down: %+v", ds[1])
	}

	// Started again: nothing new to send.
	ctx, cancel = context.WithCancel(context.Background())
	s = newSender(t, w, webhook.Hooks(eps[:1], nil), o)
	go func() { s.Run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	cancel()
	if n := len(good.accepted()); n != 3 {
		t.Fatalf("a restarted sender delivered again: %d", n)
	}
}

// TestRedirectNotFollowed: an endpoint that redirects (as http:// to
// https:// does) never has an event taken as delivered by the GET Go's
// client would make of the POST, nor has it re-sent elsewhere: the event
// is retried, then dead-lettered with a reason that says what to do.
func TestRedirectNotFollowed(t *testing.T) {
	w := outbox(t)
	secret, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	reached := 0 // requests at the redirect's target
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		reached++
		mu.Unlock()
	}))
	defer target.Close()
	for _, code := range []int{http.StatusFound, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			moved := httptest.NewServer(http.RedirectHandler(target.URL+"/hook", code))
			defer moved.Close()
			eps := []webhook.Endpoint{{URL: moved.URL + "/hook", Secrets: [][]byte{secret}}}
			o := webhook.Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, RetryFor: 100 * time.Millisecond, Poll: 20 * time.Millisecond}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := newSender(t, w, webhook.Hooks(eps, &http.Client{Timeout: time.Second}), o)
			go s.Run(ctx)
			deadline := time.Now().Add(30 * time.Second)
			for {
				ds, err := w.Deliveries(context.Background(), webhook.Names(webhook.Hooks(eps, nil)))
				if err != nil {
					t.Fatal(err)
				}
				if ds[0].Cursor == 3 {
					if len(ds[0].DeadLetters) != 3 || !strings.Contains(ds[0].DeadLetters[0].Error, "a redirect, which is not followed") {
						t.Fatalf("a redirecting endpoint's deliveries: %+v", ds[0])
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not dead-lettered: %+v", ds[0])
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if reached != 0 {
		t.Fatalf("the redirect's target was sent %d requests", reached)
	}
}

func TestSecrets(t *testing.T) {
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{"a-plain-secret-of-enough-bytes\n", true},
		{"whsec_not base64!", false},
		{"short", false},
	} {
		if _, err := webhook.ParseSecret(tt.in); (err == nil) != tt.ok {
			t.Errorf("ParseSecret(%q) = %v", tt.in, err)
		}
	}
	// The Standard Webhooks specification's own example, and the same
	// secret in a file saved by Notepad (a byte order mark, CRLF).
	for _, text := range []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "\ufeffwhsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\r\n"} {
		key, err := webhook.ParseSecret(text)
		if err != nil {
			t.Fatalf("ParseSecret(%q) = %v", text, err)
		}
		got := webhook.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
		if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
			t.Fatalf("Sign with the secret of %q = %s, want %s", text, got, want)
		}
	}
	if _, err := webhook.ParseSecret("\xff\xfew\x00h\x00s\x00e\x00c\x00_\x00"); err == nil || !strings.Contains(err.Error(), "UTF-16") {
		t.Fatalf("ParseSecret of UTF-16 text = %v, want it named", err)
	}
}

func newSender(tb testing.TB, out webhook.Outbox, targets []webhook.Target, o webhook.Options) *webhook.Sender {
	tb.Helper()
	s, err := webhook.New(out, targets, o)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestTargetsShareName: two endpoints whose URLs differ only in query or
// credentials would share one cursor, each skipping what the other took:
// refused, naming them.
func TestTargetsShareName(t *testing.T) {
	t.Parallel()
	secret, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		urls []string
		ok   bool
	}{
		{"distinct paths", []string{"https://h.example/a?token=1", "https://h.example/b?token=2"}, true},
		{"queries alone differ", []string{"https://h.example/in?tenant=a", "https://h.example/in?tenant=b"}, false},
		{"credentials alone differ", []string{"https://u:p@h.example/in", "https://v:q@h.example/in"}, false},
		{"listed twice", []string{"https://h.example/in", "https://h.example/in"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var eps []webhook.Endpoint
			for _, u := range tc.urls {
				eps = append(eps, webhook.Endpoint{URL: u, Secrets: [][]byte{secret}})
			}
			_, err := webhook.New(nil, webhook.Hooks(eps, nil), webhook.Options{})
			if tc.ok != (err == nil) {
				t.Fatalf("New = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && (!strings.Contains(err.Error(), "targets 1 and 2") || strings.Contains(err.Error(), "tenant") || strings.Contains(err.Error(), ":p@")) {
				t.Fatalf("New = %v, want targets 1 and 2 named without query or credentials", err)
			}
		})
	}
}

// TestSecretRotation: with two secrets in its file, an endpoint's events
// carry a signature under each, so a receiver that knows only the old key
// and one that knows only the new accept every event; a receiver that
// knows neither refuses them.
func TestSecretRotation(t *testing.T) {
	t.Parallel()
	secrets, err := webhook.ParseSecrets("\ufeffwhsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\r\n\nanother-secret-of-enough-bytes\n")
	if err != nil || len(secrets) != 2 {
		t.Fatalf("ParseSecrets = %d secrets, %v; want 2", len(secrets), err)
	}
	w := outbox(t)
	old, next, neither := &receiver{secret: secrets[0]}, &receiver{secret: secrets[1]}, &receiver{secret: []byte("not-the-secret-at-all")}
	var eps []webhook.Endpoint
	for _, r := range []*receiver{old, next, neither} {
		srv := httptest.NewServer(r)
		defer srv.Close()
		eps = append(eps, webhook.Endpoint{URL: srv.URL, Secrets: secrets})
	}
	o := webhook.Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, RetryFor: time.Hour, Poll: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go newSender(t, w, webhook.Hooks(eps, nil), o).Run(ctx)
	for deadline := time.Now().Add(30 * time.Second); len(old.accepted()) < 3 || len(next.accepted()) < 3; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not delivered under rotation: the old key's receiver took %d, the new key's %d", len(old.accepted()), len(next.accepted()))
		}
	}
	neither.mu.Lock()
	defer neither.mu.Unlock()
	if old.bad != 0 || next.bad != 0 || len(neither.ids) != 0 || neither.bad == 0 {
		t.Fatalf("refused: old %d, new %d; the receiver with neither key took %d, refused %d", old.bad, next.bad, len(neither.ids), neither.bad)
	}
	for _, in := range []string{"", "\n\n", "a-secret-of-enough-bytes-1\na-secret-of-enough-bytes-2\na-secret-of-enough-bytes-3\na-secret-of-enough-bytes-4\na-secret-of-enough-bytes-5", "a-secret-of-enough-bytes\nshort"} {
		if _, err := webhook.ParseSecrets(in); err == nil {
			t.Errorf("ParseSecrets(%q) took it", in)
		}
	}
}
