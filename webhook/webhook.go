package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/breachd/breachd"
)

// Outbox is what delivery needs from the outbox: the events in order, and
// a durable cursor per endpoint.
type Outbox interface {
	EventsAfter(ctx context.Context, watchlist string, after uint64, limit int) ([]breachd.OutboxEvent, error)
	Cursor(ctx context.Context, endpoint string) (uint64, error)
	Advance(ctx context.Context, endpoint string, seq uint64, dead *breachd.DeadLetter) error
	LastEvent(ctx context.Context) (uint64, error)
}

// Target is where events go: a webhook endpoint (Hook), or another
// transport's (natsrepl.EventTarget). Send returns nil once the target
// has the event.
type Target interface {
	Name() string // its cursor's key, and its name in logs and metrics
	Send(ctx context.Context, e breachd.OutboxEvent) error
}

// ErrUndeliverable marks a Send error that no retry can mend (an event
// the target can never take): the event is dead-lettered at once, rather
// than retried for RetryFor while every later event waits behind it.
var ErrUndeliverable = errors.New("undeliverable")

// Endpoint is a receiver of events.
type Endpoint struct {
	URL string
	// Secrets are the signing keys (see ParseSecrets): each event is
	// signed with every one, so that during a rotation a receiver that
	// knows either the old key or the new one accepts it.
	Secrets [][]byte
}

// hook is a webhook endpoint as a Target.
type hook struct {
	ep     Endpoint
	client *http.Client
}

// Hooks returns the endpoints as targets, posting with client (nil: a
// client with a 10 s timeout). Redirects are never followed, whatever
// client's policy: an event is delivered only by a 2xx answer to its POST.
func Hooks(eps []Endpoint, client *http.Client) []Target {
	c := http.Client{Timeout: 10 * time.Second}
	if client != nil {
		c = *client
	}
	// Go's client follows a 301, 302 or 303 with a GET and no body, so a
	// redirected endpoint (http:// to https://, a moved route) that
	// answers that GET 200 would take the event as delivered when it
	// never got it; and a 307 or 308 would re-send it, signed, to a host
	// no one configured. Standard Webhooks senders do not follow them.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	client = &c
	out := make([]Target, len(eps))
	for i, ep := range eps {
		out[i] = &hook{ep: ep, client: client}
	}
	return out
}

func (h *hook) Name() string { return Name(h.ep.URL) }

// Options tune delivery; the zero value is usable.
type Options struct {
	Logger *slog.Logger
	// RetryFor is how long an event is retried before it is
	// dead-lettered (default 24 h); MinBackoff and MaxBackoff bound the
	// waits between attempts (default 1 s and 5 min), which double.
	RetryFor, MinBackoff, MaxBackoff time.Duration
	// Poll is how often the outbox is read when nothing kicks (default 5 s).
	Poll       time.Duration
	Registerer prometheus.Registerer
}

// Sender delivers the outbox to its targets.
type Sender struct {
	out     Outbox
	targets []Target
	o       Options
	kick    []chan struct{}
	m       *metrics
}

// New returns a sender of out's events to targets; Run delivers. It
// refuses two targets of one name: they would share one cursor, and each
// would skip the events the other took.
func New(out Outbox, targets []Target, o Options) (*Sender, error) {
	seen := map[string]int{}
	for i, t := range targets {
		if j, ok := seen[t.Name()]; ok {
			return nil, fmt.Errorf("event targets %d and %d are both %s: an endpoint is known (its delivery cursor, logs and metrics) by its URL without query or credentials, which may hold secrets; give each endpoint a path of its own, or list it once",
				j+1, i+1, t.Name())
		}
		seen[t.Name()] = i
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RetryFor == 0 {
		o.RetryFor = 24 * time.Hour
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Poll == 0 {
		o.Poll = 5 * time.Second
	}
	s := &Sender{out: out, targets: targets, o: o, m: newMetrics(o.Registerer)}
	for range targets {
		s.kick = append(s.kick, make(chan struct{}, 1))
	}
	return s, nil
}

// Names returns the names the targets' cursors are kept under.
func Names(targets []Target) []string {
	out := make([]string, len(targets))
	for i, t := range targets {
		out[i] = t.Name()
	}
	return out
}

// Name is an endpoint's name in cursors, logs and metrics: its URL
// without query or credentials, which may hold secrets.
func Name(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// Kick says that new events may be in the outbox.
func (s *Sender) Kick() {
	for _, k := range s.kick {
		select {
		case k <- struct{}{}:
		default:
		}
	}
}

// Run delivers until ctx ends, one goroutine per target.
func (s *Sender) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, t := range s.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.target(ctx, t, s.kick[i])
		}()
	}
	wg.Wait()
}

// target delivers to one target, in order.
func (s *Sender) target(ctx context.Context, t Target, kick <-chan struct{}) {
	name := t.Name()
	log := s.o.Logger.With("endpoint", name)
	for ctx.Err() == nil {
		cursor, err := s.out.Cursor(ctx, name)
		var evs []breachd.OutboxEvent
		if err == nil {
			evs, err = s.out.EventsAfter(ctx, "", cursor, 100)
		}
		if err != nil {
			log.Warn("reading the outbox failed; retrying", "err", err)
		}
		if last, err := s.out.LastEvent(ctx); err == nil {
			s.m.backlog.WithLabelValues(name).Set(float64(last - min(last, cursor)))
		}
		s.m.lag.WithLabelValues(name).Set(0)
		if len(evs) > 0 {
			var head struct{ Time time.Time }
			if json.Unmarshal(evs[0].Body, &head) == nil && !head.Time.IsZero() {
				s.m.lag.WithLabelValues(name).Set(time.Since(head.Time).Seconds())
			}
		}
		for _, e := range evs {
			if !s.deliver(ctx, t, name, e, log) {
				return
			}
		}
		if len(evs) > 0 {
			continue
		}
		t := time.NewTimer(s.o.Poll)
		select {
		case <-ctx.Done():
		case <-kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// deliver sends e until t accepts it or RetryFor passes (then it is a
// dead letter), and records either; false when ctx ended first.
func (s *Sender) deliver(ctx context.Context, t Target, name string, e breachd.OutboxEvent, log *slog.Logger) bool {
	first := time.Now()
	wait := s.o.MinBackoff
	for attempt := 1; ; attempt++ {
		err := t.Send(ctx, e)
		if ctx.Err() != nil {
			return false
		}
		var dead *breachd.DeadLetter
		switch {
		case err == nil:
			s.m.outcomes.WithLabelValues(name, "delivered").Inc()
		case errors.Is(err, ErrUndeliverable) || time.Since(first)+wait > s.o.RetryFor:
			s.m.outcomes.WithLabelValues(name, "dead_lettered").Inc()
			dead = &breachd.DeadLetter{Seq: e.Seq, ID: e.ID, Watchlist: e.Watchlist, Attempts: attempt, First: first.UTC(), Last: time.Now().UTC(), Error: err.Error()}
			log.Error("event dead-lettered: the endpoint did not take it within the retry period, or never can", "event", e.ID, "attempts", attempt, "err", err)
		default:
			s.m.outcomes.WithLabelValues(name, "retried").Inc()
			log.Warn("event not delivered; retrying", "event", e.ID, "attempt", attempt, "retry", wait, "err", err)
			jittered := wait/2 + rand.N(wait/2+1)
			t := time.NewTimer(jittered)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-t.C:
			}
			wait = min(2*wait, s.o.MaxBackoff)
			continue
		}
		for {
			aerr := s.out.Advance(ctx, name, e.Seq, dead)
			if aerr == nil {
				return true
			}
			if ctx.Err() != nil {
				return false
			}
			log.Warn("recording a delivery failed; retrying", "err", aerr)
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-t.C:
			}
		}
	}
}

// Send posts one event; an error unless the endpoint answered 2xx.
func (h *hook) Send(ctx context.Context, e breachd.OutboxEvent) error {
	ep := h.ep
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(e.Body))
	if err != nil {
		return err
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("webhook-id", e.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	sigs := make([]string, len(ep.Secrets))
	for i, secret := range ep.Secrets {
		sigs[i] = Sign(secret, e.ID, ts, e.Body)
	}
	req.Header.Set("webhook-signature", strings.Join(sigs, " "))
	resp, err := h.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold secrets
		}
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 3 {
		// Its Location is not named: it may hold a token, as the URL may.
		return fmt.Errorf("the endpoint answered %s, a redirect, which is not followed: configure the URL it redirects to", resp.Status)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the endpoint answered %s", resp.Status)
	}
	return nil
}

// Sign returns the webhook-signature header of a message: "v1,"
// then the base64 HMAC-SHA256 of id.timestamp.body under secret.
func Sign(secret []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "%s.%d.", id, ts)
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Verify checks a received message as a receiver should: one of the
// space-separated signatures is Sign's, and the timestamp is within
// tolerance of now.
func Verify(secret []byte, h http.Header, body []byte, tolerance time.Duration) error {
	id, tsText, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if id == "" || err != nil {
		return errors.New("webhook: missing or malformed webhook-id or webhook-timestamp")
	}
	if d := time.Since(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook: timestamp outside the tolerance")
	}
	want := Sign(secret, id, ts, body)
	for _, sig := range strings.Fields(sigs) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return errors.New("webhook: no valid signature")
}

// MaxSecrets bounds an endpoint's signing keys: a rotation needs two.
const MaxSecrets = 4

// ParseSecrets reads an endpoint's secret file: one secret a line (see
// ParseSecret), blank lines skipped. Two lines are a rotation: every event
// carries a signature under each (space-separated, as Standard Webhooks
// specifies), so the receiver can move to the new key with no event
// refused, and the old line goes once it has.
func ParseSecrets(text string) ([][]byte, error) {
	var out [][]byte
	for i, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		secret, err := ParseSecret(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, secret)
	}
	switch {
	case len(out) == 0:
		return nil, errors.New("no secret: want one a line (whsec_ and base64, or 16 or more bytes of text)")
	case len(out) > MaxSecrets:
		return nil, fmt.Errorf("%d secrets, want at most %d (a rotation needs two)", len(out), MaxSecrets)
	}
	return out, nil
}

// ParseSecret reads a secret as Standard Webhooks writes them: "whsec_"
// then the base64 key; any other text is the key's bytes. A file saved by
// Notepad starts with a byte order mark, which is dropped: kept, it made a
// "whsec_" secret a text one, every signature one the receiver refuses.
func ParseSecret(text string) ([]byte, error) {
	if strings.HasPrefix(text, "\xff\xfe") || strings.HasPrefix(text, "\xfe\xff") {
		return nil, errors.New("UTF-16 text (Windows PowerShell's > writes it): save the secret as plain text, UTF-8")
	}
	text = strings.TrimSpace(strings.TrimPrefix(text, "\ufeff"))
	if rest, ok := strings.CutPrefix(text, "whsec_"); ok {
		key, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return nil, fmt.Errorf("a whsec_ secret whose key is not base64: %w", err)
		}
		text = string(key)
	}
	if len(text) < 16 {
		return nil, errors.New("a secret of fewer than 16 bytes: use 24 to 64 random bytes")
	}
	return []byte(text), nil
}

type metrics struct {
	outcomes *prometheus.CounterVec
	backlog  *prometheus.GaugeVec
	lag      *prometheus.GaugeVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "breachd_watch_deliveries_total",
			Help: "Webhook delivery attempts of exposure events, by endpoint and outcome (delivered, retried, dead_lettered)."}, []string{"endpoint", "outcome"}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "breachd_watch_delivery_backlog",
			Help: "Exposure events in the outbox not yet delivered to an endpoint, as of its last read."}, []string{"endpoint"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "breachd_watch_delivery_lag_seconds",
			Help: "Age of the oldest exposure event not yet delivered to an endpoint, as of its last read of the outbox (0: none waits)."}, []string{"endpoint"}),
	}
	if r != nil {
		r.MustRegister(m.outcomes, m.backlog, m.lag)
	}
	return m
}
