package daemon

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// A client that is refused over and over (bad keys, bad certificates,
// connections over a cap, a scraper over its quota) would otherwise write
// one warning per attempt: a flood of 168,000 401s once added 48 MB of log
// in 8 s. The daemon's logger therefore passes, of each warning or error
// message, the first few in every second, and counts the rest, which the
// daemon reports as one line per message every sampleReport. Records below
// WARN (admin audit lines, imports, the daemon's own events) all pass.

// sampleBurst is how many records of one message pass per second.
const sampleBurst = 5

// sampleReport is how often suppressed records are counted in the log.
const sampleReport = 10 * time.Second

// sampler holds the counts of a sampled handler and of every handler
// derived from it (WithAttrs, WithGroup).
type sampler struct {
	base  slog.Handler // the reports go here
	burst int

	mu         sync.Mutex
	second     int64          // Unix second of the counts in seen
	seen       map[string]int // records by message this second
	suppressed map[string]int // by message since the last report
}

// sampled is a slog.Handler that samples warnings and errors by message.
type sampled struct {
	slog.Handler
	s *sampler
}

func newSampled(h slog.Handler, burst int) *sampled {
	return &sampled{Handler: h, s: &sampler{base: h, burst: burst, seen: map[string]int{}, suppressed: map[string]int{}}}
}

func (h *sampled) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn && !h.s.admit(r.Message, r.Time) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h *sampled) WithAttrs(as []slog.Attr) slog.Handler {
	return &sampled{Handler: h.Handler.WithAttrs(as), s: h.s}
}

func (h *sampled) WithGroup(name string) slog.Handler {
	return &sampled{Handler: h.Handler.WithGroup(name), s: h.s}
}

// admit reports whether a record of msg at t passes, counting it if not.
func (s *sampler) admit(msg string, t time.Time) bool {
	sec := t.Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec != s.second {
		s.second = sec
		clear(s.seen)
	}
	if s.seen[msg] < s.burst {
		s.seen[msg]++
		return true
	}
	s.suppressed[msg]++
	return false
}

// report writes one line per message with records suppressed since the
// last report.
func (s *sampler) report(ctx context.Context, over time.Duration) {
	s.mu.Lock()
	counts := s.suppressed
	s.suppressed = map[string]int{}
	s.mu.Unlock()
	for msg, n := range counts {
		r := slog.NewRecord(time.Now(), slog.LevelWarn, "repeated log lines suppressed", 0)
		r.AddAttrs(slog.String("message", msg), slog.Int("suppressed", n), slog.Duration("over", over))
		s.base.Handle(ctx, r)
	}
}

// httpErrorLog is the net/http servers' error log, as slog warnings with
// one message per kind of line, so that the sampler can count them: a bad
// TLS handshake is "TLS handshake failed", whatever address it came from.
func httpErrorLog(l *slog.Logger) *log.Logger {
	return log.New(lineWriter(func(line string) {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "http: TLS handshake error from "); ok {
			peer, err, _ := strings.Cut(rest, ": ")
			l.Warn("TLS handshake failed", "peer", peer, "err", err)
			return
		}
		l.Warn("HTTP server error", "err", line)
	}), "", 0)
}

type lineWriter func(string)

func (w lineWriter) Write(p []byte) (int, error) {
	w(string(p))
	return len(p), nil
}
