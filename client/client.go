package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/internal/grpccodec"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// BreachSummary is a breach an account appears in, as an answer names it
// (breachd.Breach is the whole record).
type BreachSummary struct {
	Name        string
	Title       string
	BreachDate  string // YYYY-MM-DD
	DataClasses []string
}

// Result is the answer for one account.
type Result struct {
	Exposed  bool
	Breaches []BreachSummary // ordered by name; empty when not exposed
	// CorpusVersion identifies the corpus the answer was computed against.
	CorpusVersion uint64
}

// Error wraps a failed call's gRPC status; errors.As finds it and
// status.FromError still works on it.
type Error struct {
	Op  string
	err error
}

func (e *Error) Error() string { return "breachd " + e.Op + ": " + Explain(e.err) }

// Explain returns the message of err, a call's error, with advice where
// the call failed in a way the caller's own settings mend: the wrong
// address, TLS on one side only, a client certificate or an API key the
// daemon wants. The advice names breachctl's flags and the DialOptions
// field.
func Explain(err error) string {
	st := status.Convert(err)
	msg := st.Message()
	switch code := st.Code(); {
	case code == codes.Unavailable && strings.Contains(msg, "looked like an HTTP/1.1 header"):
		// grpc-go read an HTTP/1.1 answer where HTTP/2 frames belong.
		msg += " (this address answers HTTP/1.1, not gRPC: it may be the daemon's HTTP API (http.addr) or its metrics; give its gRPC address, addr)"
	case code == codes.Unavailable && strings.Contains(msg, "certificate signed by unknown authority"):
		msg += " (pass --ca with the CA that issued the daemon's certificate (DialOptions.CAFile))"
	case code == codes.Unavailable && strings.Contains(msg, "x509: certificate is valid for"):
		msg += " (the daemon's certificate does not name the address dialled: dial a name it holds, or give one with --server-name (DialOptions.ServerName))"
	case code == codes.Unavailable && strings.Contains(msg, "first record does not look like a TLS handshake"):
		msg += " (the daemon does not serve TLS on this address: dial it without --tls and --ca (DialOptions.TLS, CAFile))"
	case code == codes.Unavailable && (strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate")):
		// What TLS says when the daemon wants a client certificate.
		msg += " (the daemon requires a client certificate: pass --cert and --key (DialOptions.CertFile, KeyFile); " +
			"API keys without a certificate need tls.client_auth: verify-if-given on the daemon)"
	case code == codes.Unavailable && (strings.Contains(msg, "error reading server preface") ||
		strings.Contains(msg, "connection closed before server preface received") || strings.Contains(msg, "broken pipe") ||
		strings.Contains(msg, "connection reset by peer")):
		// The daemon closed the connection before a word: a TLS listener
		// does so to a client speaking plain text (the client reads EOF or
		// a reset, as the race goes), and (TLS 1.3 telling it only so) to
		// a TLS client without the certificate it requires.
		msg += " (the daemon closed the connection before answering: if it serves TLS, dial it with TLS: --ca with its CA, or --tls (DialOptions.CAFile, TLS); " +
			"if you do, it may require a client certificate: pass --cert and --key (DialOptions.CertFile, KeyFile))"
	case code == codes.Unauthenticated && strings.HasPrefix(msg, "no credential"):
		msg += " (breachctl and breachd read the key from --api-key-file FILE or BREACHD_API_KEY; DialOptions.APIKey)"
	}
	return msg
}

// Unwrap returns the gRPC status error.
func (e *Error) Unwrap() error { return e.err }

// GRPCStatus lets status.FromError and status.Code see through the wrapper.
func (e *Error) GRPCStatus() *status.Status { return status.Convert(e.err) }

// Client calls a breachd daemon. It is safe for concurrent use.
type Client struct {
	expo   breachdv1.ExposureServiceClient
	admin  breachdv1.AdminServiceClient
	pw     breachdv1.PasswordServiceClient
	assess breachdv1.AssessServiceClient
	opts   options
	// prefixBits is the private checks' prefix length the daemon last
	// gave, plus one (0: not asked yet).
	prefixBits atomic.Int32
}

type options struct {
	batch    int
	inFlight int
	retries  int
	backoff  time.Duration
}

// Option configures a Client.
type Option func(*options)

// WithBatchSize sets how many digests the bulk call packs per message.
// Values outside 1 to breachd.MaxBatch, which the server would refuse, are
// clamped to that range, and a batch larger than the daemon's limit for
// the caller (breachd.BatchLimitHeader) is sent split. By default the call
// packs 2,000 a message until the daemon's first answer gives its limit,
// then up to 8,000: about a tenth less CPU in the daemon than 2,000, and the
// quota's bound where that is lower.
func WithBatchSize(n int) Option {
	return func(o *options) { o.batch = max(1, min(n, breachd.MaxBatch)) }
}

// WithInFlight sets how many bulk batches may await an answer at once
// (default 4): enough to keep both ends busy, bounded so memory is too.
func WithInFlight(n int) Option { return func(o *options) { o.inFlight = max(1, n) } }

// WithRetries sets how often a unary call that failed with UNAVAILABLE is
// retried, with exponential backoff from base (default 3 retries from 100ms).
// Lookups are read-only, so a retry is always safe.
func WithRetries(n int, base time.Duration) Option {
	return func(o *options) { o.retries, o.backoff = max(0, n), base }
}

// New returns a client over conn (typically a *grpc.ClientConn from grpc.NewClient).
func New(conn grpc.ClientConnInterface, opts ...Option) *Client {
	o := options{inFlight: 4, retries: 3, backoff: 100 * time.Millisecond}
	for _, opt := range opts {
		opt(&o)
	}
	return &Client{expo: breachdv1.NewExposureServiceClient(conn), admin: breachdv1.NewAdminServiceClient(conn),
		pw: breachdv1.NewPasswordServiceClient(conn), assess: breachdv1.NewAssessServiceClient(conn), opts: o}
}

// Check canonicalises and hashes email locally and asks whether it is
// exposed. An invalid address returns an error wrapping canon.ErrInvalidEmail
// without calling the server.
func (c *Client) Check(ctx context.Context, email string) (Result, error) {
	d, err := canon.Digest(email)
	if err != nil {
		return Result{}, err
	}
	return c.CheckDigest(ctx, d)
}

// CheckDigest asks whether the account with digest d is exposed.
func (c *Client) CheckDigest(ctx context.Context, d breachd.Digest) (Result, error) {
	var resp *breachdv1.CheckResponse
	err := c.retry(ctx, "Check", func() error {
		var err error
		resp, err = c.expo.Check(ctx, &breachdv1.CheckRequest{EmailSha256: d[:], MinCorpusVersion: minVersion(ctx)})
		return err
	})
	if err != nil {
		return Result{}, err
	}
	r := Result{Exposed: resp.GetExposed(), CorpusVersion: resp.GetCorpusVersion()}
	for _, b := range resp.GetBreaches() {
		r.Breaches = append(r.Breaches, BreachSummary{Name: b.GetName(), Title: b.GetTitle(), BreachDate: b.GetBreachDate(), DataClasses: b.GetDataClasses()})
	}
	return r, nil
}

// CatalogEntry is a breach in the daemon's catalogue.
type CatalogEntry struct {
	BreachSummary
	Domain       string
	PwnCount     int64
	AccountCount int64
	Description  string
	IsVerified   bool
	IsSensitive  bool
}

// Breaches returns the daemon's whole catalogue, ordered by name, and its
// version. It follows the pages of ListBreaches; if the catalogue changes
// between two pages it starts again, so the answer is one version's.
func (c *Client) Breaches(ctx context.Context) ([]CatalogEntry, uint64, error) {
	return c.catalogue(ctx, breachdv1.HashKind_HASH_KIND_UNSPECIFIED)
}

// Releases returns the releases of the daemon's password corpus of kind k
// (a Pwned Passwords download, a password list, a combolist's passwords),
// ordered by name, and that corpus's version; AccountCount is a release's
// hashes. Like Breaches, the answer is one version's.
func (c *Client) Releases(ctx context.Context, k breachd.HashKind) ([]CatalogEntry, uint64, error) {
	return c.catalogue(ctx, breachdv1.KindFromDomain(k))
}

func (c *Client) catalogue(ctx context.Context, kind breachdv1.HashKind) ([]CatalogEntry, uint64, error) {
	email := kind == breachdv1.HashKind_HASH_KIND_UNSPECIFIED // AtLeast is the email corpus's
	for attempt := 0; ; attempt++ {
		var out []CatalogEntry
		var version uint64
		tok, changed := "", false
		for {
			var resp *breachdv1.ListBreachesResponse
			err := c.retry(ctx, "ListBreaches", func() error {
				var err error
				req := &breachdv1.ListBreachesRequest{PageSize: maxPageSize, PageToken: tok, Kind: kind}
				if email {
					req.MinCorpusVersion = minVersion(ctx)
				}
				resp, err = c.expo.ListBreaches(ctx, req)
				if err == nil && email {
					err = behind(ctx, resp.GetCorpusVersion())
				}
				return err
			})
			if err != nil {
				return nil, 0, err
			}
			if tok != "" && resp.GetCorpusVersion() != version {
				changed = true
			}
			version = resp.GetCorpusVersion()
			for _, b := range resp.GetBreaches() {
				e := b.ToDomain()
				out = append(out, CatalogEntry{
					BreachSummary: BreachSummary{Name: e.Name, Title: e.Title, BreachDate: e.BreachDate, DataClasses: e.DataClasses},
					Domain:        e.Domain, PwnCount: e.PwnCount, AccountCount: e.AccountCount,
					Description: e.Description, IsVerified: e.IsVerified, IsSensitive: e.IsSensitive,
				})
			}
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		if !changed || attempt == 2 {
			return out, version, nil
		}
	}
}

// DeleteBreach removes breach name from the daemon's corpus (AdminService)
// and returns the accounts no longer in any breach and the new corpus
// version. It is not retried.
func (c *Client) DeleteBreach(ctx context.Context, name string) (removed, version uint64, err error) {
	resp, err := c.admin.DeleteBreach(ctx, &breachdv1.DeleteBreachRequest{Name: name})
	if err != nil {
		return 0, 0, &Error{Op: "DeleteBreach", err: err}
	}
	return resp.GetAccountsRemoved(), resp.GetCorpusVersion(), nil
}

// DeleteRelease removes release name from the daemon's password corpus of
// kind k (an older Pwned Passwords download, once a newer one is in) and
// returns the hashes no longer in any release and that corpus's new
// version. A combolist's release goes with its breach (DeleteBreach). It is
// not retried.
func (c *Client) DeleteRelease(ctx context.Context, k breachd.HashKind, name string) (removed, version uint64, err error) {
	kind, err := releaseKind(k)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.admin.DeleteBreach(ctx, &breachdv1.DeleteBreachRequest{Name: name, Kind: kind})
	if err != nil {
		return 0, 0, &Error{Op: "DeleteRelease", err: err}
	}
	return resp.GetAccountsRemoved(), resp.GetCorpusVersion(), nil
}

// UpdateBreach corrects the catalogue entry of a breach in the daemon's
// corpus and returns it as stored, with the new corpus version.
func (c *Client) UpdateBreach(ctx context.Context, b breachd.Breach) (breachd.CatalogEntry, uint64, error) {
	resp, err := c.admin.UpdateBreach(ctx, &breachdv1.UpdateBreachRequest{Breach: breachdv1.BreachFromDomain(&b)})
	if err != nil {
		return breachd.CatalogEntry{}, 0, &Error{Op: "UpdateBreach", err: err}
	}
	return resp.GetBreach().ToDomain(), resp.GetCorpusVersion(), nil
}

// UpdateRelease corrects the catalogue entry of a release of the daemon's
// password corpus of kind k (every field but its hashes) and returns it as
// stored, with that corpus's new version.
func (c *Client) UpdateRelease(ctx context.Context, k breachd.HashKind, b breachd.Breach) (breachd.CatalogEntry, uint64, error) {
	kind, err := releaseKind(k)
	if err != nil {
		return breachd.CatalogEntry{}, 0, err
	}
	resp, err := c.admin.UpdateBreach(ctx, &breachdv1.UpdateBreachRequest{Breach: breachdv1.BreachFromDomain(&b), Kind: kind})
	if err != nil {
		return breachd.CatalogEntry{}, 0, &Error{Op: "UpdateRelease", err: err}
	}
	return resp.GetBreach().ToDomain(), resp.GetCorpusVersion(), nil
}

// releaseKind returns the wire form of password kind k for a change to a
// release: refused for any other, since the wire's unspecified kind names
// the breaches of accounts.
func releaseKind(k breachd.HashKind) (breachdv1.HashKind, error) {
	if k.Size() == 0 {
		return 0, breachd.Errorf(breachd.ErrInvalidArgument, "hash kind %d: want SHA-1 or NTLM", k)
	}
	return breachdv1.KindFromDomain(k), nil
}

// maxPageSize is the largest catalogue page the server hands out.
const maxPageSize = 100

// ErrOutcomeUnknown is wrapped by Import's error when the connection failed
// after the commit was sent: the breach may or may not have been committed.
// The corpus version (Breaches) tells; importing again is idempotent.
var ErrOutcomeUnknown = errors.New("import outcome unknown")

// Import streams breach b and the digests batches yields (of any size: they
// are sent in messages of at most breachd.MaxBatch) to the daemon's
// AdminService, then commits: the breach becomes visible all at once. If
// batches yields an error, or ctx ends, before the commit, the stream is
// cancelled and the daemon commits nothing. Imports are not retried.
func (c *Client) Import(ctx context.Context, b breachd.Breach, batches iter.Seq2[[]breachd.Digest, error]) (breachd.ImportStats, error) {
	ctx, cancel := context.WithCancel(ctx) // cancelling drops the daemon's import
	defer cancel()
	stream, err := c.admin.ImportBreach(ctx)
	if err != nil {
		return breachd.ImportStats{}, &Error{Op: "ImportBreach", err: err}
	}
	packed := make([]byte, 0, breachd.MaxBatch*breachd.DigestSize)
	resp, err := sendImport(stream, "ImportBreach", batches,
		&breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_Breach{Breach: breachdv1.BreachFromDomain(&b)}},
		func(chunk []breachd.Digest) *breachdv1.ImportBreachRequest {
			packed = packed[:0]
			for i := range chunk {
				packed = append(packed, chunk[i][:]...)
			}
			return &breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_EmailSha256{EmailSha256: packed}}
		},
		func(c *breachdv1.ImportCommit) *breachdv1.ImportBreachRequest {
			return &breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_Commit{Commit: c}}
		})
	if err != nil {
		return breachd.ImportStats{}, err
	}
	return breachd.ImportStats{Breach: resp.GetName(), Received: resp.GetReceived(), Duplicates: resp.GetDuplicates(),
		NewAccounts: resp.GetNewAccounts(), KnownAccounts: resp.GetKnownAccounts(), Version: resp.GetCorpusVersion()}, nil
}

// ImportPairs imports breach b from a combolist through the daemon
// (AdminService.ImportPairs): its accounts and the digests of its pairs
// become visible at once. Only each password's SHA-1 is sent.
//
// With countPasswords the daemon also counts the passwords in its SHA-1
// corpus (service.CountPasswords says what that stores).
func (c *Client) ImportPairs(ctx context.Context, b breachd.Breach, countPasswords bool, batches iter.Seq2[[]breachd.PairRecord, error]) (breachd.PairImportStats, error) {
	ctx, cancel := context.WithCancel(ctx) // cancelling drops the daemon's import
	defer cancel()
	stream, err := c.admin.ImportPairs(ctx)
	if err != nil {
		return breachd.PairImportStats{}, &Error{Op: "ImportPairs", err: err}
	}
	const size = breachd.DigestSize + breachd.PasswordSHA1Size
	packed := make([]byte, 0, breachd.MaxBatch*size)
	resp, err := sendImport(stream, "ImportPairs", batches,
		&breachdv1.ImportPairsRequest{Part: &breachdv1.ImportPairsRequest_Breach{Breach: breachdv1.BreachFromDomain(&b)}, CountPasswords: countPasswords},
		func(chunk []breachd.PairRecord) *breachdv1.ImportPairsRequest {
			packed = packed[:0]
			for i := range chunk {
				packed = append(append(packed, chunk[i].Account[:]...), chunk[i].Password[:]...)
			}
			return &breachdv1.ImportPairsRequest{Part: &breachdv1.ImportPairsRequest_Pairs{Pairs: packed}}
		},
		func(c *breachdv1.ImportCommit) *breachdv1.ImportPairsRequest {
			return &breachdv1.ImportPairsRequest{Part: &breachdv1.ImportPairsRequest_Commit{Commit: c}}
		})
	if err != nil {
		return breachd.PairImportStats{}, err
	}
	return breachd.PairImportStats{Breach: resp.GetName(), Received: resp.GetReceived(), Pairs: resp.GetPairs(),
		Accounts: resp.GetAccounts(), Version: resp.GetCorpusVersion()}, nil
}

// sendImport runs the client's side of a streamed import of any kind: the
// header, then the items batches yields in messages of at most
// breachd.MaxBatch (made by batch), then the commit with their count (made
// by commit). If batches yields an error, the stream is cancelled (by the
// caller's context) and the daemon commits nothing. When the connection
// fails after the commit was sent, the error wraps ErrOutcomeUnknown.
func sendImport[Req, Resp, T any](stream grpc.ClientStreamingClient[Req, Resp], op string, batches iter.Seq2[[]T, error],
	header *Req, batch func([]T) *Req, commit func(*breachdv1.ImportCommit) *Req) (*Resp, error) {
	// send sends one message; when the daemon has already ended the stream
	// it returns the daemon's status rather than io.EOF.
	send := func(m *Req) error {
		err := stream.Send(m)
		if errors.Is(err, io.EOF) {
			if _, err = stream.CloseAndRecv(); err == nil {
				err = status.Error(codes.Internal, "the daemon ended the import early")
			}
		}
		if err != nil {
			return &Error{Op: op, err: err}
		}
		return nil
	}
	if err := send(header); err != nil {
		return nil, err
	}
	var sent uint64
	for xs, err := range batches {
		if err != nil {
			return nil, err
		}
		for chunk := range slices.Chunk(xs, breachd.MaxBatch) {
			if err := send(batch(chunk)); err != nil {
				return nil, err
			}
			sent += uint64(len(chunk))
		}
	}
	if err := stream.Send(commit(&breachdv1.ImportCommit{DigestCount: sent})); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, &Error{Op: op, err: err})
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		err = &Error{Op: op, err: err}
		if !daemonVerdict(status.Code(err)) {
			err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		return nil, err
	}
	return resp, nil
}

// daemonVerdict reports whether a status with this code, received after the
// commit was sent, is the daemon's refusal to commit (so nothing was) rather
// than a failure of the connection, which leaves the outcome unknown.
func daemonVerdict(code codes.Code) bool {
	switch code {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.ResourceExhausted, codes.NotFound,
		codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented, codes.AlreadyExists:
		return true
	}
	return false
}

// retry runs call, retrying UNAVAILABLE with exponential backoff, and
// RESOURCE_EXHAUSTED that carries RetryInfo (a quota) after the delay it
// names, while ctx allows. Quota waits do not count as retries: a long sweep
// paced by its quota must not fail.
func (c *Client) retry(ctx context.Context, op string, call func() error) error {
	wait := c.opts.backoff
	if wait <= 0 {
		wait = 10 * time.Millisecond // WithRetries(n, 0): never a busy loop
	}
	for attempt := 0; ; {
		err := call()
		if err == nil {
			return nil
		}
		var delay time.Duration
		switch d, quota := RetryDelay(err); {
		case quota:
			delay = d
		case status.Code(err) == codes.Unavailable && (attempt < c.opts.retries || minVersion(ctx) > 0):
			// Asked for a minimum version (AtLeast): a replica catching up
			// is waited for until ctx ends.
			delay = wait
			wait *= 2
			if minVersion(ctx) > 0 {
				wait = min(wait, maxVersionWait)
			}
			attempt++
		default:
			return &Error{Op: op, err: err}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return &Error{Op: op, err: status.FromContextError(ctx.Err()).Err()}
		case <-t.C:
		}
	}
}

// RetryDelay returns the delay a RESOURCE_EXHAUSTED error's RetryInfo
// names, and whether it names one.
func RetryDelay(err error) (time.Duration, bool) {
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// BulkResult is the answer for one digest of a bulk call.
type BulkResult struct {
	Index         int64    // position in the input, from 0
	Exposed       bool     // whether the account is in the corpus
	BreachNames   []string // ordered by name; details from Breaches
	CorpusVersion uint64
}

// CheckDigests checks a sequence of digests over a stream and yields an
// answer for each, in input order. It packs digests into batches and keeps a
// bounded number of batches in flight, so neither end waits for the other.
// Stopping the iteration early cancels the stream. When the daemon refuses a
// batch for the caller's quota (RESOURCE_EXHAUSTED with RetryInfo) it waits
// as told, opens a new stream and sends the unanswered batches again: a long
// sweep is paced, not failed. Any other failure is yielded once, as the last
// pair, after every answer that arrived before it; callers that need to
// survive a lost connection resume from the last index they received. An
// iteration that ends without an error answered every digest: one whose
// ctx ends first ends with CANCELED (or DEADLINE_EXCEEDED).
//
// digests is read from a goroutine of CheckDigests' own, ahead of the
// answers; after an early end it is read at most up to its next digest.
func (c *Client) CheckDigests(ctx context.Context, digests iter.Seq[breachd.Digest]) iter.Seq2[BulkResult, error] {
	return c.CheckDigestRuns(ctx, func(yield func(DigestRun) bool) {
		// Each digest handed over as it comes (a run of one, its slice
		// reused: the packer copies a run before asking for the next), so
		// a batch leaves as soon as its last digest is there.
		one := make([]breachd.Digest, 1)
		for d := range digests {
			if one[0] = d; !yield(DigestRun{Digests: one}) {
				return
			}
		}
	})
}

// DigestRun is a run of digests for CheckDigestRuns.
type DigestRun struct {
	Digests []breachd.Digest // copied before the next run is asked for: the source may reuse it
	// Flush sends the digests held so far at once, in a batch cut short,
	// rather than waiting for more to fill it: for a source that may wait
	// a long time for its next digests (a live feed).
	Flush bool
}

// CheckDigestRuns is CheckDigests over runs of digests: the runs' digests
// are packed into batches as CheckDigests packs them, and a run with Flush
// ends the batch it is in, so that its answers come without waiting for
// more. Results are indexed across the runs, from 0.
func (c *Client) CheckDigestRuns(ctx context.Context, runs iter.Seq[DigestRun]) iter.Seq2[BulkResult, error] {
	return func(yield func(BulkResult, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		// The packer stops at the source's next digest once ctx ends. It is
		// not waited for: a source blocked on its own input (a pipe) would
		// hold up the caller's error.
		batches := make(chan []byte, c.opts.inFlight)
		next := func() ([]byte, bool) {
			select {
			case p, ok := <-batches:
				return p, ok
			case <-ctx.Done():
				return nil, false
			}
		}
		b := &bulk{c: c, next: next, slots: make(chan struct{}, c.opts.inFlight)}
		var packed atomic.Int64 // the source's count once every digest of it is handed over
		packed.Store(-1)
		go func() {
			defer close(batches)
			if n, all := pack(ctx, runs, b.size, batches); all {
				packed.Store(n)
			}
		}()
		var base int64
		wait := c.opts.backoff
		for {
			err := b.stream(ctx, func(n int, resp *breachdv1.CheckStreamResponse) bool {
				ok := answers(resp, n, base, yield)
				base += int64(n)
				return ok
			})
			if errors.Is(err, errStopped) {
				return
			}
			if err == nil {
				// The stream ends when the batches do, and they end early
				// when ctx does: only an answer for every digest is the end.
				if packed.Load() == base {
					return
				}
				err = &Error{Op: "CheckStream", err: status.FromContextError(ctx.Err()).Err()}
				yield(BulkResult{}, err)
				return
			}
			delay, quota := RetryDelay(err)
			switch {
			case quota:
			case status.Code(err) == codes.ResourceExhausted && b.oversized():
				// A batch over the limit the stream's header gave was
				// refused (WithBatchSize): the next stream sends it split.
				delay = 0
			case status.Code(err) == codes.Unavailable && minVersion(ctx) > 0:
				// Waiting for a replica to reach the version asked for
				// (AtLeast), until ctx ends: the unanswered batches go again.
				delay, wait = wait, min(2*wait, max(wait, maxVersionWait))
			default:
				yield(BulkResult{}, err)
				return
			}
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				yield(BulkResult{}, &Error{Op: "CheckStream", err: status.FromContextError(ctx.Err()).Err()})
				return
			case <-t.C:
			}
		}
	}
}

// pack packs the runs' digests into batches of size() each, a new slice
// each (a message owns its slice until answered), and sends them to out
// until the source ends or ctx does; a run with Flush sends the batch it
// ends as it is. It returns how many digests it handed over, and
// whether that is all of the source. A goroutine of its own, handing over
// whole batches: pulling the source one digest at a time (iter.Pull) cost
// a coroutine switch a digest, about a tenth of a sweep's CPU in the CLI.
func pack(ctx context.Context, runs iter.Seq[DigestRun], size func() int, out chan<- []byte) (sent int64, all bool) {
	packed := make([]byte, 0, size()*breachd.DigestSize)
	send := func() bool {
		select {
		case out <- packed:
			sent += int64(len(packed) / breachd.DigestSize)
			packed = make([]byte, 0, size()*breachd.DigestSize)
			return true
		case <-ctx.Done():
			return false
		}
	}
	for run := range runs {
		for _, d := range run.Digests {
			packed = append(packed, d[:]...)
			if len(packed) == cap(packed) && !send() {
				return sent, false
			}
		}
		if run.Flush && len(packed) > 0 && !send() {
			return sent, false
		}
	}
	return sent, len(packed) == 0 || send()
}

// errStopped ends a stream whose caller stopped iterating.
var errStopped = errors.New("caller stopped")

// bulk is the state of a bulk check that outlives each of its streams.
type bulk struct {
	c     *Client
	next  func() ([]byte, bool) // the source's next batch, packed; pulled by one sender at a time
	slots chan struct{}         // one per batch in flight: bounds pending
	// limit is the most digests a message may carry, from the last
	// stream's header (breachd.BatchLimitHeader); 0 until one gives it.
	limit atomic.Int64

	mu      sync.Mutex // guards pending and drained
	pending []piece    // messages sent and not yet answered, oldest first
	drained bool       // the source is exhausted
}

// piece is one message's share of a packed batch: a batch larger than the
// daemon's limit goes in several. The batch holds one slot, which the
// answer to its last piece frees.
type piece struct {
	packed []byte
	last   bool
}

// Batch sizes without WithBatchSize: the first until the daemon gives its
// limit, then the limit up to the second.
const (
	firstBatch = 2000
	autoBatch  = 8000
)

// size is the number of digests the packer puts in its next batch.
func (b *bulk) size() int {
	limit, n := int(b.limit.Load()), b.c.opts.batch
	switch {
	case n > 0 && limit > 0:
		return min(n, limit)
	case n > 0:
		return n
	case limit > 0:
		return min(autoBatch, limit)
	}
	return firstBatch
}

// split cuts p into pieces of at most the daemon's limit.
func (b *bulk) split(p piece) []piece {
	n := int(b.limit.Load()) * breachd.DigestSize
	if n == 0 || len(p.packed) <= n {
		return []piece{p}
	}
	var ps []piece
	for c := range slices.Chunk(p.packed, n) {
		ps = append(ps, piece{packed: c})
	}
	ps[len(ps)-1].last = p.last
	return ps
}

// oversized reports whether a message awaiting its answer is larger than
// the daemon's limit.
func (b *bulk) oversized() bool {
	n := int(b.limit.Load()) * breachd.DigestSize
	b.mu.Lock()
	defer b.mu.Unlock()
	return n > 0 && slices.ContainsFunc(b.pending, func(p piece) bool { return len(p.packed) > n })
}

// learn takes the daemon's batch limit from the stream's header, once the
// header is in (after the first Recv). A daemon that gives none (older than
// the header) leaves the sizes as they were.
func (b *bulk) learn(st grpc.ClientStream) {
	md, err := st.Header()
	if err != nil {
		return
	}
	v := md.Get(breachd.BatchLimitHeader)
	if len(v) == 0 {
		return
	}
	if n, err := strconv.Atoi(v[0]); err == nil && n > 0 {
		b.limit.Store(int64(min(n, breachd.MaxBatch)))
	}
}

// stream runs one stream: it sends the pending batches again, then new
// ones, and passes each answer, in order, with its batch's size, to onAnswer
// (false stops). It returns nil when every digest was answered.
func (b *bulk) stream(ctx context.Context, onAnswer func(n int, resp *breachdv1.CheckStreamResponse) bool) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// grpccodec on any connection: grpc-go's codec clears a 1 MiB buffer
	// for each batch of more than 32 KiB it marshals.
	st, err := b.c.expo.CheckStream(sctx, grpc.ForceCodecV2(grpccodec.Codec))
	if err != nil {
		return &Error{Op: "CheckStream", err: err}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs first: stops the sender
	b.mu.Lock()
	var resend []piece // split to the limit the last stream gave
	for _, p := range b.pending {
		resend = append(resend, b.split(p)...)
	}
	b.pending = slices.Clone(resend)
	b.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.send(sctx, st, resend)
	}()
	for first := true; ; first = false {
		resp, err := st.Recv()
		if first {
			b.learn(st)
		}
		b.mu.Lock()
		var head []byte
		last := false
		if len(b.pending) > 0 {
			head, last = b.pending[0].packed, b.pending[0].last
		}
		b.mu.Unlock()
		switch {
		case errors.Is(err, io.EOF) && head == nil:
			return nil
		case errors.Is(err, io.EOF):
			return fmt.Errorf("breachd CheckStream: the stream ended with %d batches unanswered", len(b.pending))
		case err != nil:
			return &Error{Op: "CheckStream", err: err}
		case head == nil:
			return errors.New("breachd CheckStream: an answer to no batch")
		}
		n := len(head) / breachd.DigestSize
		if int(resp.GetCount()) != n {
			return fmt.Errorf("breachd CheckStream: answer for %d digests, sent %d", resp.GetCount(), n)
		}
		if err := checkAnswer(resp, n); err != nil {
			return err
		}
		b.mu.Lock()
		b.pending = b.pending[1:]
		b.mu.Unlock()
		if last {
			<-b.slots
		}
		if !onAnswer(n, resp) {
			return errStopped
		}
	}
}

// send sends again the batches of an earlier stream, then packs the
// source's digests into batches and sends them, waiting for a free slot for
// each; it closes the sending side when the source is exhausted.
func (b *bulk) send(ctx context.Context, st grpc.BidiStreamingClient[breachdv1.CheckStreamRequest, breachdv1.CheckStreamResponse], resend []piece) {
	for _, p := range resend {
		if st.Send(&breachdv1.CheckStreamRequest{EmailSha256: p.packed, MinCorpusVersion: minVersion(ctx)}) != nil {
			return // the receiver reports the stream's status
		}
	}
	for {
		b.mu.Lock()
		drained := b.drained
		b.mu.Unlock()
		if drained {
			st.CloseSend()
			return
		}
		select {
		case b.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		packed, ok := b.next()
		if !ok {
			b.mu.Lock()
			b.drained = true
			b.mu.Unlock()
		}
		if len(packed) == 0 {
			<-b.slots
			continue // drained: close on the next turn
		}
		ps := b.split(piece{packed: packed, last: true})
		b.mu.Lock()
		b.pending = append(b.pending, ps...)
		b.mu.Unlock()
		for _, p := range ps {
			if st.Send(&breachdv1.CheckStreamRequest{EmailSha256: p.packed, MinCorpusVersion: minVersion(ctx)}) != nil {
				return
			}
		}
	}
}

// checkAnswer checks that a packed answer is well formed for n digests.
func checkAnswer(resp *breachdv1.CheckStreamResponse, n int) error {
	idx, set, sets := resp.GetExposedIndex(), resp.GetBreachSet(), resp.GetBreachSets()
	if len(idx) != len(set) {
		return fmt.Errorf("breachd CheckStream: %d exposed positions but %d breach sets", len(idx), len(set))
	}
	for i := range idx {
		if int(idx[i]) >= n || (i > 0 && idx[i] <= idx[i-1]) || int(set[i]) >= len(sets) {
			return fmt.Errorf("breachd CheckStream: malformed answer at exposed position %d", i)
		}
	}
	return nil
}

// answers yields the results of one checked answer; false if the caller stopped.
func answers(resp *breachdv1.CheckStreamResponse, n int, base int64, yield func(BulkResult, error) bool) bool {
	idx, set, sets := resp.GetExposedIndex(), resp.GetBreachSet(), resp.GetBreachSets()
	for i := 0; i < n; i++ {
		r := BulkResult{Index: base + int64(i), CorpusVersion: resp.GetCorpusVersion()}
		if len(idx) > 0 && int(idx[0]) == i {
			r.Exposed, r.BreachNames = true, sets[set[0]].GetNames()
			idx, set = idx[1:], set[1:]
		}
		if !yield(r, nil) {
			return false
		}
	}
	return true
}

type minVersionKey struct{}

// maxVersionWait caps the backoff of a call waiting for a version.
const maxVersionWait = 2 * time.Second

// AtLeast returns a context whose reads of the email corpus must be
// answered from its version v or later: Check, CheckDigest(s),
// CheckPrivate, CheckPrivateDigest(s), Assess, AssessDigest and Breaches.
// A read replica that is behind answers UNAVAILABLE (a daemon older than
// this client, which does not read the minimum of Assess, CheckPrivate and
// ListBreaches, answers from its version, which the client treats alike),
// and the call (unary, or the stream of CheckDigests) is retried with
// backoff until ctx ends, on the next replica when the client balances
// over several (a dns:/// target). Use it to read your own write: pass the
// version a breach import (Import, ImportPairs) or delete returned, and
// give ctx the deadline you can wait.
// Password corpora have versions of their own: CheckPassword,
// PasswordRange and Releases do not look at it.
func AtLeast(ctx context.Context, v uint64) context.Context {
	return context.WithValue(ctx, minVersionKey{}, v)
}

// behind is the error for an answer of the email corpus read at version v
// when ctx asks for a later one (AtLeast): UNAVAILABLE, as a replica's own
// refusal of a Check, which retry waits out.
func behind(ctx context.Context, v uint64) error {
	if m := minVersion(ctx); v < m {
		return status.Errorf(codes.Unavailable, "answered from corpus version %d, before the %d asked for (a replica catching up)", v, m)
	}
	return nil
}

func minVersion(ctx context.Context) uint64 {
	v, _ := ctx.Value(minVersionKey{}).(uint64)
	return v
}
