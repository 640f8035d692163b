package server

import (
	"context"
	"encoding/json"
	"iter"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/service"
)

// WatchServer implements breachdv1.WatchServiceServer over the use cases.
type WatchServer struct {
	breachdv1.UnimplementedWatchServiceServer
	svc *service.Service
	// streams runs the change streams by the import protocol (idle
	// timeout, commit count).
	streams *AdminServer
}

var _ breachdv1.WatchServiceServer = (*WatchServer)(nil)

func watchlistInfo(w breachd.Watchlist) *breachdv1.WatchlistInfo {
	return &breachdv1.WatchlistInfo{Name: w.Name, Accounts: w.Accounts, Created: timestamppb.New(w.Created)}
}

// CreateWatchlist makes an empty watchlist.
func (s *WatchServer) CreateWatchlist(ctx context.Context, req *breachdv1.CreateWatchlistRequest) (*breachdv1.WatchlistInfo, error) {
	w, err := s.svc.CreateWatchlist(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(s.streams.log, "CreateWatchlist", inMessage("CreateWatchlistRequest", err))
	}
	return watchlistInfo(w), nil
}

// AddToWatchlist puts a stream of digests on a watchlist.
func (s *WatchServer) AddToWatchlist(stream breachdv1.WatchService_AddToWatchlistServer) error {
	return s.change(stream, "AddToWatchlist", s.svc.AddToWatchlist)
}

// RemoveFromWatchlist takes a stream of digests off a watchlist.
func (s *WatchServer) RemoveFromWatchlist(stream breachdv1.WatchService_RemoveFromWatchlistServer) error {
	return s.change(stream, "RemoveFromWatchlist", s.svc.RemoveFromWatchlist)
}

type changeStream interface {
	breachdv1.WatchService_AddToWatchlistServer
}

func (s *WatchServer) change(stream changeStream, method string, use func(context.Context, string, iter.Seq2[[]breachd.Digest, error]) (uint64, error)) error {
	const msg = "WatchlistChangeRequest"
	first, err := importHeader(stream, msg, "watchlist's name")
	if err != nil {
		return toStatus(s.streams.log, method, err)
	}
	name, ok := first.GetPart().(*breachdv1.WatchlistChangeRequest_Name)
	if !ok {
		return toStatus(s.streams.log, method, breachd.Errorf(breachd.ErrInvalidArgument, "%s: the first message must carry the watchlist's name", msg))
	}
	var received uint64
	batch := make([]breachd.Digest, 0, breachd.MaxBatch)
	batches := importBatches(s.streams, stream, msg, "digests", "watchlist "+name.Name, func(req *breachdv1.WatchlistChangeRequest) (part[breachd.Digest], error) {
		switch p := req.GetPart().(type) {
		case *breachdv1.WatchlistChangeRequest_EmailSha256:
			var err error
			if batch, err = digestBatch(msg, p.EmailSha256, batch); err != nil {
				return part[breachd.Digest]{}, err
			}
			received += uint64(len(batch))
			return part[breachd.Digest]{items: batch}, nil
		case *breachdv1.WatchlistChangeRequest_Commit:
			return part[breachd.Digest]{commit: p.Commit}, nil
		}
		return part[breachd.Digest]{}, breachd.Errorf(breachd.ErrInvalidArgument, "%s: only the first message may carry the name", msg)
	})
	n, err := use(stream.Context(), name.Name, batches)
	if err != nil {
		return toStatus(s.streams.log, method, err)
	}
	resp := &breachdv1.WatchlistChangeResponse{Name: name.Name, Received: received, Changed: n}
	if wls, err := s.svc.ListWatchlists(stream.Context()); err == nil {
		for _, w := range wls {
			if w.Name == name.Name {
				resp.Accounts = w.Accounts
			}
		}
	}
	return stream.SendAndClose(resp)
}

// ListWatchlists returns every watchlist.
func (s *WatchServer) ListWatchlists(ctx context.Context, _ *breachdv1.ListWatchlistsRequest) (*breachdv1.ListWatchlistsResponse, error) {
	wls, err := s.svc.ListWatchlists(ctx)
	if err != nil {
		return nil, toStatus(s.streams.log, "ListWatchlists", err)
	}
	resp := &breachdv1.ListWatchlistsResponse{}
	for _, w := range wls {
		resp.Watchlists = append(resp.Watchlists, watchlistInfo(w))
	}
	return resp, nil
}

// DeleteWatchlist removes a watchlist.
func (s *WatchServer) DeleteWatchlist(ctx context.Context, req *breachdv1.DeleteWatchlistRequest) (*breachdv1.DeleteWatchlistResponse, error) {
	if err := s.svc.DeleteWatchlist(ctx, req.GetName()); err != nil {
		return nil, toStatus(s.streams.log, "DeleteWatchlist", inMessage("DeleteWatchlistRequest", err))
	}
	return &breachdv1.DeleteWatchlistResponse{Name: req.GetName()}, nil
}

// ListEvents pages through a watchlist's events.
func (s *WatchServer) ListEvents(ctx context.Context, req *breachdv1.ListEventsRequest) (*breachdv1.ListEventsResponse, error) {
	page, err := s.svc.WatchEvents(ctx, req.GetWatchlist(), req.GetCursor(), int(req.GetPageSize()))
	if err != nil {
		return nil, toStatus(s.streams.log, "ListEvents", inMessage("ListEventsRequest", err))
	}
	resp := &breachdv1.ListEventsResponse{NextCursor: page.Next}
	for _, e := range page.Events {
		resp.Events = append(resp.Events, []byte(json.RawMessage(e.Body)))
	}
	return resp, nil
}

// ListDeliveries reports the webhook endpoints' progress.
func (s *WatchServer) ListDeliveries(ctx context.Context, _ *breachdv1.ListDeliveriesRequest) (*breachdv1.ListDeliveriesResponse, error) {
	ds, err := s.svc.Deliveries(ctx)
	if err != nil {
		return nil, toStatus(s.streams.log, "ListDeliveries", err)
	}
	resp := &breachdv1.ListDeliveriesResponse{}
	for _, d := range ds {
		pd := &breachdv1.Delivery{Endpoint: d.Endpoint, Cursor: d.Cursor, Pending: d.Pending}
		for _, dl := range d.DeadLetters {
			pd.DeadLetters = append(pd.DeadLetters, &breachdv1.DeadLetter{Position: dl.Seq, Id: dl.ID, Watchlist: dl.Watchlist,
				Attempts: int32(dl.Attempts), FirstAttempt: timestamppb.New(dl.First), LastAttempt: timestamppb.New(dl.Last), Error: dl.Error})
		}
		resp.Deliveries = append(resp.Deliveries, pd)
	}
	return resp, nil
}
