package client_test

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/client"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

func TestCheckDigestsOrderAndCount(t *testing.T) {
	t.Parallel()
	var present []string
	for i := range 3000 {
		present = append(present, fmt.Sprintf("user%d@example.com", i))
	}
	conn, stop := demoServer(map[string][]string{"Alpha": present})
	defer stop()
	// 10,007 digests: every third is present; odd sizes exercise partial batches.
	var want []bool
	var ds []breachd.Digest
	for i := range 10007 {
		if i%3 == 0 && i/3 < len(present) {
			d, _ := canon.Digest(present[i/3])
			ds, want = append(ds, d), append(want, true)
		} else {
			ds, want = append(ds, sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))), append(want, false)
		}
	}
	for _, batch := range []int{1, 777, 10000} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) {
			c := client.New(conn, client.WithBatchSize(batch), client.WithInFlight(3))
			n := 0
			for r, err := range c.CheckDigests(t.Context(), func(yield func(breachd.Digest) bool) {
				for _, d := range ds {
					if !yield(d) {
						return
					}
				}
			}) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Index != int64(n) || r.Exposed != want[n] || r.CorpusVersion != 1 {
					t.Fatalf("result %d = %+v, want index %d exposed %v", n, r, n, want[n])
				}
				n++
				if batch == 1 && n == 50 {
					break // stopping early must not hang or leak
				}
			}
			if batch != 1 && n != len(ds) {
				t.Fatalf("got %d results, want %d", n, len(ds))
			}
		})
	}
}

// TestCheckDigestsBatchSizes: by default a sweep sends 2,000 digests a
// message until the daemon's first answer gives its limit (MaxBatch for a
// daemon without quotas), then 8,000; WithBatchSize is kept as given.
// The sizes are what the connection's interceptor saw go out.
func TestCheckDigestsBatchSizes(t *testing.T) {
	t.Parallel()
	d, err := startDemo()
	if err != nil {
		t.Fatal(err)
	}
	defer d.stop()
	var present []string
	for i := range 500 {
		present = append(present, fmt.Sprintf("user%d@example.com", i))
	}
	if _, err := client.New(d.conn).Import(t.Context(), breachd.Breach{Name: "Alpha", Title: "Alpha", BreachDate: "2011-06-17"}, emailBatches(present)); err != nil {
		t.Fatal(err)
	}
	var ds []breachd.Digest
	for i := range 60_000 {
		if i%100 == 0 {
			dg, _ := canon.Digest(present[i/100%len(present)])
			ds = append(ds, dg)
		} else {
			ds = append(ds, sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i))))
		}
	}
	for _, tc := range []struct {
		name  string
		opts  []client.Option
		check func(sizes []int) bool
	}{
		{"default", nil, func(sizes []int) bool {
			// 2,000 each until the first answer; after it the packer's
			// next batch and every one after it (but the last) is 8,000.
			i := 0
			for i < len(sizes) && sizes[i] == 2000 {
				i++
			}
			rest := sizes[i:]
			return i >= 1 && i <= 12 && len(rest) >= 2 && !slices.ContainsFunc(rest[:len(rest)-1], func(n int) bool { return n != 8000 })
		}},
		{"WithBatchSize(777)", []client.Option{client.WithBatchSize(777)}, func(sizes []int) bool {
			return !slices.ContainsFunc(sizes[:len(sizes)-1], func(n int) bool { return n != 777 })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var sizes []int
			record := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				st, err := streamer(ctx, desc, cc, method, opts...)
				return &sizeRecorder{ClientStream: st, record: func(n int) { mu.Lock(); sizes = append(sizes, n); mu.Unlock() }}, err
			}
			conn, err := grpc.NewClient("unix://"+d.srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStreamInterceptor(record))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			n := 0
			for r, err := range client.New(conn, tc.opts...).CheckDigests(t.Context(), slices.Values(ds)) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Index != int64(n) || r.Exposed != (n%100 == 0) {
					t.Fatalf("result %d = %+v", n, r)
				}
				n++
			}
			mu.Lock()
			defer mu.Unlock()
			if n != len(ds) || sum(sizes) != len(ds) || !tc.check(sizes) {
				t.Fatalf("%d answers; messages of %v digests", n, sizes)
			}
		})
	}
}

// sizeRecorder records the digest count of each bulk message sent.
type sizeRecorder struct {
	grpc.ClientStream
	record func(int)
}

func (s *sizeRecorder) SendMsg(m any) error {
	if req, ok := m.(*breachdv1.CheckStreamRequest); ok {
		s.record(len(req.GetEmailSha256()) / breachd.DigestSize)
	}
	return s.ClientStream.SendMsg(m)
}

func sum(xs []int) (n int) {
	for _, x := range xs {
		n += x
	}
	return n
}

// TestCheckDigestRunsFlush: a run with Flush is answered before the source
// gives more: the source here waits for those answers before its next
// run, so a client that held the digests back to fill a batch would never
// answer (the test's 10 s deadline).
func TestCheckDigestRunsFlush(t *testing.T) {
	t.Parallel()
	present, _ := canon.Digest("a@example.com")
	conn, stop := demoServer(map[string][]string{"Alpha": {"a@example.com"}})
	defer stop()
	answered := make(chan int, 16)
	runs := func(yield func(client.DigestRun) bool) {
		for i := range 3 {
			run := []breachd.Digest{present, sha256.Sum256([]byte{byte(i)}), present}
			if !yield(client.DigestRun{Digests: run, Flush: true}) {
				return
			}
			select { // the live feed's pause: until this run is answered
			case <-answered:
			case <-time.After(10 * time.Second):
				t.Error("a flushed run was not answered within 10 s")
				return
			}
		}
		yield(client.DigestRun{Digests: []breachd.Digest{present}}) // no Flush: sent at the end
	}
	n := 0
	for r, err := range client.New(conn).CheckDigestRuns(t.Context(), runs) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Index != int64(n) || r.Exposed != (n%3 != 1 || n == 9) {
			t.Fatalf("result %d = %+v", n, r)
		}
		if n++; n%3 == 0 {
			answered <- n
		}
	}
	if n != 10 {
		t.Fatalf("%d answers, want 10", n)
	}
}

// TestCheckDigestsCancelled: a sweep whose context ends between batches,
// every batch sent answered, ends with the context's error, not as if the
// source had ended. A caller must not take a cut sweep for a whole one (the
// bulk CLI once checkpointed past such an end).
func TestCheckDigestsCancelled(t *testing.T) {
	t.Parallel()
	conn, stop := demoServer(map[string][]string{"Alpha": {"a@example.com"}})
	defer stop()
	c := client.New(conn, client.WithBatchSize(10), client.WithInFlight(1))
	for range 20 {
		ctx, cancel := context.WithCancel(t.Context())
		source := func(yield func(breachd.Digest) bool) {
			for i := range 30 {
				if i == 10 {
					<-ctx.Done() // the first batch is answered and the sweep cancelled
				}
				if !yield(sha256.Sum256([]byte{byte(i)})) {
					return
				}
			}
		}
		n := 0
		var last error
		for _, err := range c.CheckDigests(ctx, source) {
			if err != nil {
				last = err
				break
			}
			if n++; n == 10 {
				cancel()
			}
		}
		cancel()
		// Batches packed after the cancel may still be answered, before
		// the stream's end reaches them; all 30 answered end cleanly.
		if n < 10 || n == 30 && last != nil || n < 30 && status.Code(last) != codes.Canceled {
			t.Fatalf("a sweep cancelled after 10 of 30 digests: %d answers, then %v; want CANCELED after the 10th, or all 30", n, last)
		}
	}
}

func TestCheckInvalidEmail(t *testing.T) {
	t.Parallel()
	conn, stop := demoServer(map[string][]string{"Alpha": {"a@example.com"}})
	defer stop()
	_, err := client.New(conn).Check(t.Context(), "not an email")
	if !errors.Is(err, canon.ErrInvalidEmail) {
		t.Fatalf("Check(invalid) = %v, want canon.ErrInvalidEmail", err)
	}
}

func TestBreaches(t *testing.T) {
	t.Parallel()
	conn, stop := demoServer(map[string][]string{"Alpha": {"a@example.com"}, "Beta": {"a@example.com", "b@example.com"}})
	defer stop()
	bs, v, err := client.New(conn).Breaches(t.Context())
	if err != nil || v != 2 || len(bs) != 2 || bs[1].Name != "Beta" || bs[1].AccountCount != 2 {
		t.Fatalf("Breaches = %+v, %d, %v", bs, v, err)
	}
}

// TestRetryUnavailable points the client at an address where nothing listens:
// every attempt is UNAVAILABLE, so it retries and then returns a wrapped status.
// The address is a unix socket that does not exist: a TCP port released
// for the test could be taken by a server of a test running beside it.
func TestRetryUnavailable(t *testing.T) {
	t.Parallel()
	addr := "unix://" + filepath.Join(t.TempDir(), "nobody.sock")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := client.New(conn, client.WithRetries(2, 10*time.Millisecond))
	start := time.Now()
	_, err = c.CheckDigest(t.Context(), breachd.Digest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("CheckDigest = %v, want UNAVAILABLE", err)
	}
	var ce *client.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T does not wrap *client.Error", err)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Fatalf("returned after %v: did not back off 10ms+20ms", time.Since(start))
	}

	// A cancelled context stops the retries at once.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c = client.New(conn, client.WithRetries(5, time.Hour))
	if _, err := c.CheckDigest(ctx, breachd.Digest{}); err == nil {
		t.Fatal("CheckDigest with a cancelled context succeeded")
	}
}

func TestCheckDigestInvalidArgumentNotRetried(t *testing.T) {
	t.Parallel()
	conn, stop := demoServer(map[string][]string{"Alpha": {"a@example.com"}})
	defer stop()
	// An empty stream batch cannot be sent through the client, so use the
	// error path of a real call: a cancelled context is returned, not retried.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := client.New(conn, client.WithRetries(5, time.Hour)).CheckDigest(ctx, breachd.Digest{})
	if status.Code(err) != codes.Canceled {
		t.Fatalf("CheckDigest(cancelled) = %v, want CANCELED", err)
	}
}

// TestImport imports through the client in uneven batches, then checks the
// outcomes a caller must tell apart: the daemon's refusal (nothing
// committed), and a connection lost after the commit was sent (unknown).
func TestImport(t *testing.T) {
	t.Parallel()
	d, err := startDemo()
	if err != nil {
		t.Fatal(err)
	}
	defer d.stop()
	c := client.New(d.conn)
	var ds []breachd.Digest
	for i := range 25_003 {
		ds = append(ds, sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i))))
	}
	b := breachd.Breach{Name: "Alpha", Title: "Alpha"}
	st, err := c.Import(t.Context(), b, func(yield func([]breachd.Digest, error) bool) {
		_ = yield(ds[:3], nil) && yield(ds[3:22_000], nil) && yield(ds[22_000:], nil) // more than one message's worth
	})
	if err != nil || st.Received != 25_003 || st.NewAccounts != 25_003 || st.Version != 1 {
		t.Fatalf("Import = %+v, %v; want 25003 new accounts at version 1", st, err)
	}

	// A source that fails: the stream is cancelled, nothing is committed.
	errSource := errors.New("dump unreadable")
	_, err = c.Import(t.Context(), breachd.Breach{Name: "Beta", Title: "Beta"}, func(yield func([]breachd.Digest, error) bool) {
		_ = yield(ds[:10], nil) && yield(nil, errSource)
	})
	if !errors.Is(err, errSource) {
		t.Fatalf("Import with a failing source = %v, want %v", err, errSource)
	}
	// The daemon refuses: a verdict, not an unknown outcome.
	_, err = c.Import(t.Context(), breachd.Breach{Name: "Empty", Title: "Empty"}, func(func([]breachd.Digest, error) bool) {})
	if status.Code(err) != codes.InvalidArgument || errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("empty Import = %v, want INVALID_ARGUMENT and a known outcome", err)
	}
	bs, version, err := c.Breaches(t.Context())
	if err != nil || version != 1 || len(bs) != 1 {
		t.Fatalf("Breaches = %v, %d, %v; want only Alpha at version 1", bs, version, err)
	}

	// The daemon goes away after the last batch was sent, before the
	// commit: the caller cannot know whether it committed.
	_, err = c.Import(t.Context(), breachd.Breach{Name: "Gamma", Title: "Gamma"}, func(yield func([]breachd.Digest, error) bool) {
		if yield(ds[:10], nil) {
			d.srv.Close()
		}
	})
	if !errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("Import with the daemon stopped before the commit = %v, want ErrOutcomeUnknown", err)
	}
}

// TestAtLeastWaits: a check that asks for a corpus version the daemon
// reaches only later (an import 1.5s on, far beyond the three ordinary
// retries) waits for it until its context ends, unary and streamed; with
// a deadline before the version comes, it fails with UNAVAILABLE.
func TestAtLeastWaits(t *testing.T) {
	t.Parallel()
	conn, stop := demoServer(map[string][]string{"Alpha": {"a@example.com"}})
	defer stop()
	c := client.New(conn)
	late, _ := canon.Digest("late@example.com")

	short := func() context.Context {
		ctx, cancel := context.WithTimeout(client.AtLeast(t.Context(), 2), 500*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	if _, err := c.CheckDigest(short(), late); status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Unavailable {
		t.Fatalf("a check for a version that never comes: %v", err)
	}
	// The calls whose requests cannot name a version: the client compares
	// the answer's. Before, they answered from version 1.
	if a, err := c.AssessDigest(short(), late, nil, breachd.ContextSignup); status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Unavailable {
		t.Fatalf("an assessment for a version that never comes: %+v, %v", a, err)
	}
	if _, v, err := c.Breaches(short()); status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Unavailable {
		t.Fatalf("the catalogue for a version that never comes: version %d, %v", v, err)
	}

	ctx, cancel := context.WithTimeout(client.AtLeast(t.Context(), 2), 30*time.Second)
	defer cancel()
	// The checks see version 2 once the import commits, which may be
	// before its call returns: the connection stays open until it has.
	imported := make(chan struct{})
	defer func() { <-imported }()
	go func() {
		defer close(imported)
		time.Sleep(1500 * time.Millisecond)
		b := breachd.Breach{Name: "Late", Title: "Late", BreachDate: "2020-01-01"}
		if _, err := c.Import(context.Background(), b, emailBatches([]string{"late@example.com"})); err != nil {
			t.Error(err)
		}
	}()
	type result struct {
		exposed bool
		version uint64
		err     error
	}
	unary, streamed, assessed, listed := make(chan result, 1), make(chan result, 1), make(chan result, 1), make(chan result, 1)
	go func() {
		a, err := c.AssessDigest(ctx, late, nil, breachd.ContextSignup)
		assessed <- result{len(a.Breaches) > 0, a.CorpusVersion, err}
	}()
	go func() {
		bs, v, err := c.Breaches(ctx)
		listed <- result{slices.ContainsFunc(bs, func(b client.CatalogEntry) bool { return b.Name == "Late" }), v, err}
	}()
	go func() {
		res, err := c.CheckDigest(ctx, late)
		unary <- result{res.Exposed, res.CorpusVersion, err}
	}()
	go func() {
		var r result
		for res, err := range c.CheckDigests(ctx, func(yield func(breachd.Digest) bool) { yield(late) }) {
			r = result{res.Exposed, res.CorpusVersion, err}
		}
		streamed <- r
	}()
	for name, ch := range map[string]chan result{"CheckDigest": unary, "CheckDigests": streamed, "AssessDigest": assessed, "Breaches": listed} {
		if r := <-ch; r.err != nil || !r.exposed || r.version < 2 {
			t.Errorf("%s waiting for version 2: %+v", name, r)
		}
	}
}

// TestReleases lists and deletes password releases through a real daemon:
// an older download deleted once a newer one is in, a name that is not
// there, and a combolist's release, which goes only with its breach.
func TestReleases(t *testing.T) {
	t.Parallel()
	d, err := startDemo()
	if err != nil {
		t.Fatal(err)
	}
	defer d.stop()
	ctx := t.Context()
	c := client.New(d.conn)
	hash := func(pw string) (h [20]byte) { return sha1.Sum([]byte(pw)) }
	records := func(counts map[string]uint64) iter.Seq2[[]breachd.PasswordRecord, error] {
		var rs []breachd.PasswordRecord
		for _, pw := range slices.Sorted(maps.Keys(counts)) {
			var r breachd.PasswordRecord
			h := hash(pw)
			copy(r.Hash[:], h[:])
			r.Count = counts[pw]
			rs = append(rs, r)
		}
		return func(yield func([]breachd.PasswordRecord, error) bool) { yield(rs, nil) }
	}
	release := func(name string) breachd.Breach {
		return breachd.Breach{Name: name, Title: name, BreachDate: "2026-12-01", DataClasses: []string{"Passwords"}}
	}
	for _, r := range []struct {
		name   string
		counts map[string]uint64
	}{
		{"PP-2026-06", map[string]uint64{"only-old": 3, "both": 10, "old-too": 1}},
		{"PP-2026-12", map[string]uint64{"both": 12, "only-new": 5}},
	} {
		if _, err := c.ImportPasswords(ctx, breachd.SHA1, release(r.name), 0, records(r.counts)); err != nil {
			t.Fatal(err)
		}
	}
	combo := breachd.Breach{Name: "Combo", Title: "Combo", BreachDate: "2026-11-20", DataClasses: []string{"Email addresses", "Passwords"}}
	acct, _ := canon.Digest("a@example.com")
	if _, err := c.ImportPairs(ctx, combo, true, func(yield func([]breachd.PairRecord, error) bool) {
		yield([]breachd.PairRecord{{Account: acct, Password: hash("combo-pw")}}, nil)
	}); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		rs, _, err := c.Releases(ctx, breachd.SHA1)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, fmt.Sprintf("%s:%d", r.Name, r.AccountCount))
		}
		return out
	}
	if got, want := names(), []string{"Combo:1", "PP-2026-06:3", "PP-2026-12:2"}; !slices.Equal(got, want) {
		t.Fatalf("Releases = %v, want %v", got, want)
	}
	removed, version, err := c.DeleteRelease(ctx, breachd.SHA1, "PP-2026-06")
	if err != nil || removed != 2 {
		t.Fatalf("DeleteRelease = %d removed, %v; want 2 (only-old, old-too)", removed, err)
	}
	for pw, want := range map[string]uint64{"only-old": 0, "old-too": 0, "both": 12, "only-new": 5, "combo-pw": 1} {
		sum := hash(pw)
		h, _ := breachd.PasswordHashFromBytes(breachd.SHA1, sum[:])
		exp, err := c.CheckPassword(ctx, h)
		if err != nil || exp.Count != want || exp.CorpusVersion != version {
			t.Errorf("CheckPassword(%s) = %+v, %v; want count %d at version %d", pw, exp, err, want, version)
		}
	}
	if got, want := names(), []string{"Combo:1", "PP-2026-12:2"}; !slices.Equal(got, want) {
		t.Errorf("Releases after the delete = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		kind breachd.HashKind
		name string
		code codes.Code
		msg  string
	}{
		{breachd.SHA1, "PP-2026-06", codes.NotFound, `the sha1 password corpus has no release "PP-2026-06"`},
		{breachd.SHA1, "Combo", codes.FailedPrecondition, `release "Combo" holds the passwords of the combolist of breach "Combo": delete the breach, and its passwords go with it`},
		{breachd.SHA1, "", codes.InvalidArgument, "DeleteBreachRequest.name: empty, want a release name"},
	} {
		_, _, err := c.DeleteRelease(ctx, tc.kind, tc.name)
		if s := status.Convert(errors.Unwrap(err)); s.Code() != tc.code || s.Message() != tc.msg {
			t.Errorf("DeleteRelease(%s, %q) = %v, want %s %q", tc.kind, tc.name, err, tc.code, tc.msg)
		}
	}
	// The breach of accounts is untouched by all of it.
	if bs, _, err := c.Breaches(ctx); err != nil || len(bs) != 1 || bs[0].Name != "Combo" {
		t.Errorf("Breaches = %+v, %v; want Combo alone", bs, err)
	}
}

// TestReadAPIKey: a key file is read however an editor saved it, and one
// that cannot be read as text says so.
func TestReadAPIKey(t *testing.T) {
	t.Parallel()
	const key = "bd_0123456789abcdef"
	for _, tc := range []struct {
		name, content, err string
	}{
		{"plain", key + "\n", ""},
		{"CRLF, spaces", "  " + key + " \r\n", ""},
		{"Notepad's byte order mark", "\xef\xbb\xbf" + key + "\r\n", ""},
		{"UTF-16 (PowerShell's >)", "\xff\xfeb\x00d\x00", "is UTF-16 text"},
		{"empty", "\n", "is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := client.ReadAPIKey(path)
			if tc.err == "" && (err != nil || got != key) {
				t.Fatalf("ReadAPIKey = %q, %v; want %q", got, err, key)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("ReadAPIKey = %q, %v; want an error saying %q", got, err, tc.err)
			}
		})
	}
}
