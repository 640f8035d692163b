package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/dump"
	"github.com/breachd/breachd/internal/atomicfile"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

const watchUsage = `usage: breachctl watch <command> [flags]

commands:
  create NAME                      make an empty watchlist; it sees the imports committed from now on
  add NAME (--file PATH | EMAIL...) put accounts on it (CSV column, one email a line, --digests; gzip detected)
  remove NAME (--file PATH | EMAIL...) take accounts off it
  list                             every watchlist and its size
  delete NAME                      remove a watchlist (its events stay for the endpoints; one created again lists only its own)
  events NAME [--since CURSOR]     its exposure events after CURSOR, as JSON Lines (CloudEvents 1.0)
  deliveries                       each webhook endpoint's progress and dead letters

Watchlists live on the writer and need the admin scope (or the admin socket).
`

// watch runs 'breachctl watch ...'.
func watch(ctx context.Context, cc connConfig, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, watchUsage)
		return errUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("breachctl watch "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cc.register(fs)
	var in bulkConfig
	var since, cursorFile string
	var limit int
	switch sub {
	case "add", "remove":
		fs.StringVar(&in.file, "file", "", "accounts from this file (- for stdin): CSV with a header, JSON Lines, or one email a line; gzip, zstd, bzip2, xz and UTF-16 are detected")
		fs.StringVar(&in.column, "column", "email", "CSV column (or JSON Lines field) holding the email")
		fs.BoolVar(&in.digests, "digests", false, "the file holds hex SHA-256 digests of canonical emails, one per line")
	case "events":
		fs.StringVar(&since, "since", "", "the cursor to start after (a next_cursor printed before); empty for the oldest event kept")
		fs.StringVar(&cursorFile, "cursor-file", "", "read the cursor from this file if it exists, and write the next one to it (a batch job's bookmark)")
		fs.IntVar(&limit, "limit", 1000, "at most this many events")
	case "create", "list", "delete", "deliveries":
	default:
		fmt.Fprintf(stderr, "breachctl watch: unknown command %q\n\n%s", sub, watchUsage)
		return errUsage
	}
	// The name may come before the flags (watch add NAME --file PATH).
	var rest []string
	flagArgs := args[1:]
	if len(flagArgs) > 0 && !strings.HasPrefix(flagArgs[0], "-") {
		rest, flagArgs = flagArgs[:1], flagArgs[1:]
	}
	if err := fs.Parse(flagArgs); err != nil {
		return err
	}
	rest = append(rest, fs.Args()...)
	set := flagsSet(fs)
	needName := sub != "list" && sub != "deliveries"
	switch {
	case needName && len(rest) == 0:
		fmt.Fprintf(stderr, "breachctl watch %s: name the watchlist\n", sub)
		return errUsage
	case (sub == "add" || sub == "remove") && (in.file == "") == (len(rest) == 1):
		fmt.Fprintf(stderr, "breachctl watch %s: give --file PATH or email addresses, not both\n", sub)
		return errUsage
	case in.file == "" && (set["digests"] || set["column"]):
		fmt.Fprintf(stderr, "breachctl watch %s: --column and --digests are for --file; addresses on the command line are emails\n", sub)
		return errUsage
	case set["column"] && in.digests:
		fmt.Fprintf(stderr, "breachctl watch %s: --column and --digests do not go together: --digests reads one digest a line, no CSV\n", sub)
		return errUsage
	case sub != "add" && sub != "remove" && len(rest) > 1, !needName && len(rest) > 0:
		fmt.Fprintf(stderr, "breachctl watch %s: unexpected arguments %q\n", sub, rest)
		return errUsage
	}
	conn, err := cc.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	wc := breachdv1.NewWatchServiceClient(conn)
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, cc.timeout) }
	fail := func(err error) error {
		return fmt.Errorf("watch %s against %s: %s", sub, cc.addr, client.Explain(err))
	}
	switch sub {
	case "create":
		cctx, cancel := call()
		defer cancel()
		w, err := wc.CreateWatchlist(cctx, &breachdv1.CreateWatchlistRequest{Name: rest[0]})
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "watchlist %s created: it sees the imports committed from now on\n", w.GetName())
	case "add", "remove":
		resp, err := changeWatchlist(ctx, wc, sub, rest[0], in, rest[1:], stderr)
		if errors.Is(err, canon.ErrInvalidEmail) { // an invalid row (exit status 4), not the daemon's
			return err
		}
		if err != nil {
			return fail(err)
		}
		verb := "added"
		if sub == "remove" {
			verb = "removed"
		}
		fmt.Fprintf(stdout, "watchlist %s: %d received, %d %s, %d accounts on it\n", resp.GetName(), resp.GetReceived(), resp.GetChanged(), verb, resp.GetAccounts())
	case "list":
		cctx, cancel := call()
		defer cancel()
		resp, err := wc.ListWatchlists(cctx, &breachdv1.ListWatchlistsRequest{})
		if err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tACCOUNTS\tCREATED")
		for _, w := range resp.GetWatchlists() {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", w.GetName(), w.GetAccounts(), w.GetCreated().AsTime().Format(time.RFC3339))
		}
		return tw.Flush()
	case "delete":
		cctx, cancel := call()
		defer cancel()
		if _, err := wc.DeleteWatchlist(cctx, &breachdv1.DeleteWatchlistRequest{Name: rest[0]}); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "watchlist %s deleted\n", rest[0])
	case "events":
		return watchEvents(ctx, wc, cc.timeout, rest[0], since, cursorFile, limit, stdout, stderr, fail)
	case "deliveries":
		cctx, cancel := call()
		defer cancel()
		resp, err := wc.ListDeliveries(cctx, &breachdv1.ListDeliveriesRequest{})
		if err != nil {
			return fail(err)
		}
		if len(resp.GetDeliveries()) == 0 {
			fmt.Fprintln(stdout, "no webhook endpoints (config watch.webhooks); events can be read with 'breachctl watch events'")
		}
		for _, d := range resp.GetDeliveries() {
			fmt.Fprintf(stdout, "%s: delivered up to %d, %d pending, %d dead letters\n", d.GetEndpoint(), d.GetCursor(), d.GetPending(), len(d.GetDeadLetters()))
			for _, dl := range d.GetDeadLetters() {
				fmt.Fprintf(stdout, "  dead letter at %d: event %s of watchlist %s, %d attempts from %s to %s: %s\n", dl.GetPosition(), dl.GetId(), dl.GetWatchlist(),
					dl.GetAttempts(), dl.GetFirstAttempt().AsTime().Format(time.RFC3339), dl.GetLastAttempt().AsTime().Format(time.RFC3339), dl.GetError())
			}
		}
	}
	return nil
}

// changeWatchlist streams accounts (from in's file, or emails) to add or
// remove, as the import protocol does: the name, batches, the commit.
func changeWatchlist(ctx context.Context, wc breachdv1.WatchServiceClient, sub, name string, in bulkConfig, emails []string, stderr io.Writer) (*breachdv1.WatchlistChangeResponse, error) {
	var stream interface {
		Send(*breachdv1.WatchlistChangeRequest) error
		CloseAndRecv() (*breachdv1.WatchlistChangeResponse, error)
		grpc.ClientStream
	}
	var err error
	if sub == "add" {
		stream, err = wc.AddToWatchlist(ctx)
	} else {
		stream, err = wc.RemoveFromWatchlist(ctx)
	}
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&breachdv1.WatchlistChangeRequest{Part: &breachdv1.WatchlistChangeRequest_Name{Name: name}}); err != nil {
		return nil, err
	}
	var sent uint64
	send := func(ds []breachd.Digest) error {
		b := make([]byte, 0, len(ds)*breachd.DigestSize)
		for _, d := range ds {
			b = append(b, d[:]...)
		}
		sent += uint64(len(ds))
		return stream.Send(&breachdv1.WatchlistChangeRequest{Part: &breachdv1.WatchlistChangeRequest_EmailSha256{EmailSha256: b}})
	}
	if in.file == "" {
		var ds []breachd.Digest
		for _, e := range emails {
			d, err := canon.Digest(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w (nothing was changed)", e, err)
			}
			ds = append(ds, d)
		}
		if err := send(ds); err != nil {
			return nil, err
		}
	} else {
		f, _, err := dump.Open(ctx, in.file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		rd, err := dump.NewReader(f, in.dumpOptions())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.file, err)
		}
		defer rd.Close()
		rejected := 0
		rd.OnReject = func(line int64, reason string) {
			if rejected++; rejected <= 10 {
				fmt.Fprintf(stderr, "breachctl: %s line %d skipped: %s\n", in.file, line, reason)
			}
		}
		batch := make([]breachd.Digest, 0, breachd.MaxBatch)
		for {
			batch, err = rd.Read(batch[:0])
			if len(batch) > 0 {
				if serr := send(batch); serr != nil {
					return nil, serr
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", in.file, err)
			}
		}
		if st := rd.Stats(); st.Rejected > 0 {
			fmt.Fprintf(stderr, "breachctl: %d of %d rows of %s skipped (not an email, or not a digest)\n", st.Rejected, st.Rows, in.file)
		}
	}
	if err := stream.Send(&breachdv1.WatchlistChangeRequest{Part: &breachdv1.WatchlistChangeRequest_Commit{Commit: &breachdv1.ImportCommit{DigestCount: sent}}}); err != nil {
		return nil, err
	}
	return stream.CloseAndRecv()
}

// watchEvents prints a watchlist's events after a cursor as JSON Lines,
// and the cursor to ask with next on stderr (and in cursorFile).
func watchEvents(ctx context.Context, wc breachdv1.WatchServiceClient, timeout time.Duration, name, since, cursorFile string, limit int,
	stdout, stderr io.Writer, fail func(error) error) error {
	if cursorFile != "" && since == "" {
		b, err := os.ReadFile(cursorFile)
		switch {
		case err == nil:
			since = strings.TrimSpace(string(b))
		case !errors.Is(err, os.ErrNotExist):
			return err
		}
	}
	cursor, n := since, 0
	for n < limit {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := wc.ListEvents(cctx, &breachdv1.ListEventsRequest{Watchlist: name, Cursor: cursor, PageSize: int32(min(limit-n, 1000))})
		cancel()
		if err != nil {
			return fail(err)
		}
		for _, e := range resp.GetEvents() {
			if _, err := fmt.Fprintf(stdout, "%s\n", e); err != nil {
				// A full disk, a closed pipe: the events were not taken,
				// so the bookmark stays where it was.
				return fmt.Errorf("writing the events: %w (the cursor file, if any, still holds the cursor before them)", err)
			}
		}
		n += len(resp.GetEvents())
		cursor = resp.GetNextCursor()
		if len(resp.GetEvents()) == 0 {
			break
		}
	}
	fmt.Fprintf(stderr, "breachctl: %d events; next cursor %s\n", n, cursor)
	if cursorFile != "" && cursor != since {
		// The events first, on disk if they went to a file; then the
		// bookmark past them, whole or not at all: a crash between the
		// two prints them again next time, never loses them.
		if f, ok := stdout.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				if err := f.Sync(); err != nil {
					return fmt.Errorf("writing the events: %w (the cursor file still holds the cursor before them)", err)
				}
			}
		}
		if err := atomicfile.WriteFile(cursorFile, []byte(cursor+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}
