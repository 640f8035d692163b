package service

import (
	"context"
	"iter"
	"strconv"
	"strings"

	"github.com/breachd/breachd"
)

// Watchlists is what the watch use cases need: named sets of account
// digests, and the outbox of exposure events computed for them.
type Watchlists interface {
	Create(ctx context.Context, name string) (breachd.Watchlist, error)
	Add(ctx context.Context, name string, batches iter.Seq2[[]breachd.Digest, error]) (uint64, error)
	Remove(ctx context.Context, name string, batches iter.Seq2[[]breachd.Digest, error]) (uint64, error)
	Watchlist(ctx context.Context, name string) (breachd.Watchlist, error)
	List(ctx context.Context) ([]breachd.Watchlist, error)
	Delete(ctx context.Context, name string) error
	EventsAfter(ctx context.Context, watchlist string, after uint64, limit int) ([]breachd.OutboxEvent, error)
	PrunedUpto(ctx context.Context) (uint64, error)
	Deliveries(ctx context.Context, endpoints []string) ([]breachd.Delivery, error)
}

// watching is the watchlists a service serves, and the webhook endpoints
// their events go to (for Deliveries).
type watching struct {
	w         Watchlists
	endpoints []string
}

// OpenWatchlists serves the watch use cases from w from now on, whose
// events go to the webhook endpoints named.
func (s *Service) OpenWatchlists(w Watchlists, endpoints []string) {
	s.watch.Store(&watching{w: w, endpoints: endpoints})
}

// Event pages.
const (
	DefaultEventPage = 100
	MaxEventPage     = 1000
)

// EventPage is one page of a watchlist's events, and the cursor to ask
// for the next (the same cursor when there is nothing newer yet).
type EventPage struct {
	Events []breachd.OutboxEvent
	Next   string
}

// named returns the watchlists for a call about watchlist name, checked.
func (s *Service) named(name string) (Watchlists, error) {
	w, err := s.watchlists()
	if err != nil {
		return nil, err
	}
	return w, validName(name, "watchlist")
}

// watchlists returns the watchlists for a call, refused on a replica
// (only the writer computes and delivers events) or without them.
func (s *Service) watchlists() (Watchlists, error) {
	if s.readOnly != nil {
		return nil, s.readOnly()
	}
	wt := s.watch.Load()
	if wt == nil {
		return nil, breachd.Errorf(breachd.ErrUnavailable, "the watchlists are not open (yet)")
	}
	return wt.w, nil
}

// CreateWatchlist makes an empty watchlist, which sees the imports
// committed from now on.
//
// A watchlist's name is also the end of its events' NATS subject
// (natsrepl.EventSubjectPrefix): a name that ends in '.' or holds ".." is
// refused here, where a breach's name may, since a subject with an empty
// token is no subject, and its every event would wait out the retry period
// before the events of other watchlists behind it. Watchlists made before
// keep working, but for that.
func (s *Service) CreateWatchlist(ctx context.Context, name string) (breachd.Watchlist, error) {
	w, err := s.named(name)
	if err != nil {
		return breachd.Watchlist{}, err
	}
	if strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return breachd.Watchlist{}, breachd.Errorf(breachd.ErrInvalidArgument,
			"name: %s is not a watchlist name: it may not end in '.' or hold \"..\" (its events' NATS subject would have an empty token)", breachd.Quote(name))
	}
	return w.Create(ctx, name)
}

// AddToWatchlist puts batches of 1 to breachd.MaxBatch digests on a
// watchlist, all at once when batches ends without an error; it returns
// how many were not on it.
func (s *Service) AddToWatchlist(ctx context.Context, name string, batches iter.Seq2[[]breachd.Digest, error]) (uint64, error) {
	w, err := s.named(name)
	if err != nil {
		return 0, err
	}
	return w.Add(ctx, name, checked(batches, "digests", "watchlist "+name, true))
}

// RemoveFromWatchlist takes batches of digests off a watchlist; it
// returns how many were on it.
func (s *Service) RemoveFromWatchlist(ctx context.Context, name string, batches iter.Seq2[[]breachd.Digest, error]) (uint64, error) {
	w, err := s.named(name)
	if err != nil {
		return 0, err
	}
	if _, err := w.Watchlist(ctx, name); err != nil {
		return 0, err
	}
	return w.Remove(ctx, name, checked(batches, "digests", "watchlist "+name, false))
}

// ListWatchlists returns every watchlist, ordered by name.
func (s *Service) ListWatchlists(ctx context.Context) ([]breachd.Watchlist, error) {
	w, err := s.watchlists()
	if err != nil {
		return nil, err
	}
	return w.List(ctx)
}

// DeleteWatchlist removes a watchlist; its events stay in the outbox.
func (s *Service) DeleteWatchlist(ctx context.Context, name string) error {
	w, err := s.named(name)
	if err != nil {
		return err
	}
	return w.Delete(ctx, name)
}

// WatchEvents returns a page of watchlist name's events after cursor
// ("": from the oldest kept). A cursor older than the events pruned
// (watch.retention) is refused: events after it are gone.
func (s *Service) WatchEvents(ctx context.Context, name, cursor string, size int) (EventPage, error) {
	w, err := s.watchlists()
	if err != nil {
		return EventPage{}, err
	}
	if _, err := w.Watchlist(ctx, name); err != nil {
		return EventPage{}, err
	}
	var after uint64
	if cursor != "" {
		if after, err = strconv.ParseUint(cursor, 10, 64); err != nil {
			return EventPage{}, breachd.Errorf(breachd.ErrInvalidArgument, "cursor: %s is not a cursor: use the next_cursor of an earlier page, or none to start from the first event", breachd.Quote(cursor))
		}
	}
	if pruned, err := w.PrunedUpto(ctx); err != nil {
		return EventPage{}, err
	} else if cursor == "" {
		after = max(after, pruned) // from the oldest event kept
	} else if after < pruned {
		return EventPage{}, breachd.Errorf(breachd.ErrFailedPrecondition,
			"events after cursor %d up to %d were pruned (older than watch.retention): sweep the watchlist's accounts with 'breachctl check' for what you missed, then go on from cursor %d",
			after, pruned, pruned)
	}
	switch {
	case size < 0:
		return EventPage{}, breachd.Errorf(breachd.ErrInvalidArgument, "page_size: %d is negative", size)
	case size == 0:
		size = DefaultEventPage
	}
	evs, err := w.EventsAfter(ctx, name, after, min(size, MaxEventPage))
	if err != nil {
		return EventPage{}, err
	}
	next := after
	if len(evs) > 0 {
		next = evs[len(evs)-1].Seq
	}
	return EventPage{Events: evs, Next: strconv.FormatUint(next, 10)}, nil
}

// Deliveries reports each webhook endpoint's progress and dead letters.
func (s *Service) Deliveries(ctx context.Context) ([]breachd.Delivery, error) {
	w, err := s.watchlists()
	if err != nil {
		return nil, err
	}
	return w.Deliveries(ctx, s.watch.Load().endpoints)
}
