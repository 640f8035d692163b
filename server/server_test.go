package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/daemon/daemontest"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/server"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
)

func digests(set string, n int) []breachd.Digest {
	out := make([]breachd.Digest, n)
	for i := range out {
		out[i] = sha256.Sum256(binary.BigEndian.AppendUint64([]byte(set), uint64(i)))
	}
	return out
}

func pack(ds []breachd.Digest) []byte {
	b := make([]byte, 0, len(ds)*32)
	for _, d := range ds {
		b = append(b, d[:]...)
	}
	return b
}

var alpha = breachd.Breach{Name: "Alpha", Title: "Alpha Inc.", BreachDate: "2011-06-17", DataClasses: []string{"Email addresses", "Passwords"}}

type fixture struct {
	st     *store.Store
	conn   *grpc.ClientConn
	expo   breachdv1.ExposureServiceClient
	admin  breachdv1.AdminServiceClient
	health healthpb.HealthClient
}

// newFixture serves a real store from a real daemon, with alpha imported
// from digests("a", nAlpha).
func newFixture(tb testing.TB, nAlpha int, opts server.Options) *fixture {
	tb.Helper()
	srv := daemontest.Start(tb, tb.TempDir(), func(c *daemon.Config) { c.Admin = opts.Admin }, nil)
	if nAlpha > 0 {
		if _, err := daemontest.Import(context.Background(), srv, alpha, digests("a", nAlpha)); err != nil {
			tb.Fatal(err)
		}
	}
	conn := daemontest.Dial(tb, srv)
	f := &fixture{st: srv.Emails(), conn: conn, expo: breachdv1.NewExposureServiceClient(conn),
		admin: breachdv1.NewAdminServiceClient(conn), health: healthpb.NewHealthClient(conn)}
	if opts.Admin { // over TCP a daemon without TLS refuses admin calls
		f.admin = breachdv1.NewAdminServiceClient(daemontest.DialAdmin(tb, srv))
	}
	return f
}

// one yields ds as a single batch.
func one(ds []breachd.Digest) iter.Seq2[[]breachd.Digest, error] {
	return func(yield func([]breachd.Digest, error) bool) { yield(ds, nil) }
}

func wantCode(tb testing.TB, err error, code codes.Code, msg string) {
	tb.Helper()
	if status.Code(err) != code {
		tb.Fatalf("error = %v, want code %v", err, code)
	}
	if !strings.Contains(status.Convert(err).Message(), msg) {
		tb.Fatalf("error message = %q, want it to contain %q", status.Convert(err).Message(), msg)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100, server.Options{})
	ctx := t.Context()
	a := digests("a", 100)
	got, err := f.expo.Check(ctx, &breachdv1.CheckRequest{EmailSha256: a[42][:]})
	if err != nil {
		t.Fatal(err)
	}
	want := &breachdv1.CheckResponse{Exposed: true, CorpusVersion: 1, Breaches: []*breachdv1.BreachSummary{
		{Name: "Alpha", Title: "Alpha Inc.", BreachDate: "2011-06-17", DataClasses: []string{"Email addresses", "Passwords"}},
	}}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("Check(present) diff (-want +got):\n%s", diff)
	}
	absent := digests("absent", 1)[0]
	got, err = f.expo.Check(ctx, &breachdv1.CheckRequest{EmailSha256: absent[:]})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&breachdv1.CheckResponse{CorpusVersion: 1}, got, protocmp.Transform()); diff != "" {
		t.Fatalf("Check(absent) diff (-want +got):\n%s", diff)
	}
}

func TestCheckInvalid(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, server.Options{})
	for _, n := range []int{0, 31, 33, 64} {
		_, err := f.expo.Check(t.Context(), &breachdv1.CheckRequest{EmailSha256: make([]byte, n)})
		wantCode(t, err, codes.InvalidArgument, "CheckRequest.email_sha256: got "+strconv.Itoa(n)+" bytes, want 32")
	}
}

func TestCheckStream(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1000, server.Options{})
	a, absent := digests("a", 1000), digests("absent", 3000)
	stream, err := f.expo.CheckStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Three batches in flight before the first answer is read; every 4th
	// digest is present.
	var batches [][]breachd.Digest
	var wantIdx [][]uint32
	for b := 0; b < 3; b++ {
		var ds []breachd.Digest
		var idx []uint32
		for i := 0; i < 1000; i++ {
			if i%4 == 0 {
				ds = append(ds, a[(b*250+i/4)%len(a)])
				idx = append(idx, uint32(i))
			} else {
				ds = append(ds, absent[b*1000+i])
			}
		}
		batches = append(batches, ds)
		wantIdx = append(wantIdx, idx)
		if err := stream.Send(&breachdv1.CheckStreamRequest{EmailSha256: pack(ds)}); err != nil {
			t.Fatal(err)
		}
	}
	for b := range batches {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		idx := resp.GetExposedIndex()
		for j, set := range resp.GetBreachSet() {
			if names := resp.GetBreachSets()[set].GetNames(); !slices.Equal(names, []string{"Alpha"}) {
				t.Fatalf("batch %d index %d breaches = %v", b, idx[j], names)
			}
		}
		if resp.GetCount() != 1000 || resp.GetCorpusVersion() != 1 || !slices.Equal(idx, wantIdx[b]) {
			t.Fatalf("batch %d: count %d, version %d, exposed %v; want 1000, 1, %v", b, resp.GetCount(), resp.GetCorpusVersion(), idx, wantIdx[b])
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err == nil {
		t.Fatal("stream did not end after CloseSend")
	}
}

func TestCheckStreamInvalid(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, server.Options{})
	tests := []struct {
		name   string
		packed []byte
		msg    string
	}{
		{"empty batch", nil, "CheckStreamRequest.email_sha256: invalid batch: empty, want 1 to 10000 digests"},
		{"ragged", make([]byte, 95), "got 95 bytes, want a multiple of 32"},
		{"oversized", make([]byte, 32*(breachd.MaxBatch+1)), "got 10001 digests, want at most 10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := f.expo.CheckStream(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&breachdv1.CheckStreamRequest{EmailSha256: tt.packed}); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			wantCode(t, err, codes.InvalidArgument, tt.msg)
		})
	}
}

func TestBreaches(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, server.Options{})
	list, err := f.expo.ListBreaches(t.Context(), &breachdv1.ListBreachesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetBreaches()) != 1 || list.GetBreaches()[0].GetAccountCount() != 10 || list.GetCorpusVersion() != 1 {
		t.Fatalf("ListBreaches = %v", list)
	}
	got, err := f.expo.GetBreach(t.Context(), &breachdv1.GetBreachRequest{Name: "Alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(list.GetBreaches()[0], got.GetBreach(), protocmp.Transform()); diff != "" {
		t.Fatalf("GetBreach diff (-list +get):\n%s", diff)
	}
	_, err = f.expo.GetBreach(t.Context(), &breachdv1.GetBreachRequest{Name: "Nope"})
	wantCode(t, err, codes.NotFound, `unknown breach "Nope"`)
	_, err = f.expo.GetBreach(t.Context(), &breachdv1.GetBreachRequest{})
	wantCode(t, err, codes.InvalidArgument, "GetBreachRequest.name: empty")
	// A huge name is refused with a message that quotes only its start.
	_, err = f.expo.GetBreach(t.Context(), &breachdv1.GetBreachRequest{Name: strings.Repeat("x", 500_000)})
	wantCode(t, err, codes.InvalidArgument, "GetBreachRequest.name: ")
	if n := len(status.Convert(err).Message()); n > 300 {
		t.Fatalf("GetBreach(500 KB name) message is %d bytes, want a short one", n)
	}
}

// TestListBreachesPages imports more breaches than a page holds and follows
// the page tokens (AIP-158).
func TestListBreachesPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0, server.Options{})
	var want []string
	for i := range 120 {
		b := breachd.Breach{Name: fmt.Sprintf("B%03d", i), Title: "t"}
		if _, err := f.st.Import(t.Context(), b, one(digests(b.Name, 1))); err != nil { // straight into the store: quicker
			t.Fatal(err)
		}
		want = append(want, b.Name)
	}
	for _, tc := range []struct {
		size  int32
		pages []int
	}{{0, []int{50, 50, 20}}, {7, nil}, {500, []int{100, 20}}} {
		t.Run(fmt.Sprint("size=", tc.size), func(t *testing.T) {
			var got []string
			var sizes []int
			tok := ""
			for {
				resp, err := f.expo.ListBreaches(t.Context(), &breachdv1.ListBreachesRequest{PageSize: tc.size, PageToken: tok})
				if err != nil {
					t.Fatal(err)
				}
				for _, b := range resp.GetBreaches() {
					got = append(got, b.GetName())
				}
				sizes = append(sizes, len(resp.GetBreaches()))
				if resp.GetCorpusVersion() != 120 {
					t.Fatalf("page corpus version = %d, want 120", resp.GetCorpusVersion())
				}
				if tok = resp.GetNextPageToken(); tok == "" {
					break
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("pages hold %v, want %v", got, want)
			}
			if tc.pages != nil && !slices.Equal(sizes, tc.pages) {
				t.Fatalf("page sizes = %v, want %v", sizes, tc.pages)
			}
		})
	}
	_, err := f.expo.ListBreaches(t.Context(), &breachdv1.ListBreachesRequest{PageSize: -1})
	wantCode(t, err, codes.InvalidArgument, "ListBreachesRequest.page_size: got -1")
	_, err = f.expo.ListBreaches(t.Context(), &breachdv1.ListBreachesRequest{PageToken: "bogus"})
	wantCode(t, err, codes.InvalidArgument, "ListBreachesRequest.page_token")
}

// TestFullPageFits checks that a page of the largest breaches the field
// limits allow stays under the message limits of both ends.
func TestFullPageFits(t *testing.T) {
	t.Parallel()
	big := func(n int) string { return strings.Repeat("é", n/2) } // 2 bytes per rune
	classes := make([]string, breachd.MaxDataClasses)
	for i := range classes {
		classes[i] = big(breachd.MaxDataClassLen)
	}
	b := breachd.CatalogEntry{AccountCount: 1 << 40, Breach: breachd.Breach{
		Name: strings.Repeat("N", breachd.MaxNameLen), Title: big(breachd.MaxTitleLen), Domain: big(breachd.MaxDomainLen - 1),
		BreachDate: "2011-06-17", AddedDate: time.Now(), PwnCount: 1 << 40, Description: big(breachd.MaxDescriptionLen),
		DataClasses: classes, IsVerified: true, IsSensitive: true,
	}}
	if err := b.Validate(); err != nil {
		t.Fatalf("the largest breach is invalid: %v", err)
	}
	resp := &breachdv1.ListBreachesResponse{CorpusVersion: 1 << 60, NextPageToken: strings.Repeat("x", 100)}
	for range service.MaxPageSize {
		resp.Breaches = append(resp.Breaches, breachdv1.EntryFromDomain(&b))
	}
	const clientDefault = 4 << 20 // grpc-go's default receive limit
	if n := proto.Size(resp); n > clientDefault || n > server.DefaultTransportLimits().MaxSendMsgSize {
		t.Fatalf("a full page of maximal breaches is %d bytes, over a 4 MiB limit", n)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0, server.Options{})
	for _, svc := range []string{"", "breachd.v1.ExposureService"} {
		resp, err := f.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q = %v, %v", svc, resp, err)
		}
	}
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, server.Options{})
	f.st.Close()
	_, err := f.expo.Check(t.Context(), &breachdv1.CheckRequest{EmailSha256: make([]byte, 32)})
	wantCode(t, err, codes.Unavailable, "shutting down")
}

func TestAdminDisabled(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0, server.Options{})
	stream, err := f.admin.ImportBreach(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_Breach{Breach: &breachdv1.Breach{Name: "B", Title: "B"}}})
	_, err = stream.CloseAndRecv()
	wantCode(t, err, codes.Unimplemented, "AdminService")
}

func importStream(tb testing.TB, admin breachdv1.AdminServiceClient, b *breachdv1.Breach, ds []breachd.Digest, commit int64) (*breachdv1.ImportBreachResponse, error) {
	tb.Helper()
	stream, err := admin.ImportBreach(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	if err := stream.Send(&breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_Breach{Breach: b}}); err != nil {
		tb.Fatal(err)
	}
	for len(ds) > 0 {
		n := min(len(ds), 777)
		if err := stream.Send(&breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_EmailSha256{EmailSha256: pack(ds[:n])}}); err != nil {
			break // the server ended the stream; CloseAndRecv has the status
		}
		ds = ds[n:]
	}
	if commit >= 0 {
		stream.Send(&breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_Commit{Commit: &breachdv1.ImportCommit{DigestCount: uint64(commit)}}})
	}
	return stream.CloseAndRecv()
}

func TestAdminImportWhileServing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 500, server.Options{Admin: true})
	ctx := t.Context()
	b := digests("b", 5000)
	beta := &breachdv1.Breach{Name: "Beta", Title: "Beta Ltd", BreachDate: "2012-01-02", DataClasses: []string{"Email addresses"}}

	// Without a commit, or with the wrong count, nothing becomes visible.
	_, err := importStream(t, f.admin, beta, b, -1)
	wantCode(t, err, codes.InvalidArgument, "without a commit")
	_, err = importStream(t, f.admin, beta, b, 4999)
	wantCode(t, err, codes.InvalidArgument, "got 4999, but 5000 digests arrived")
	resp, err := f.expo.Check(ctx, &breachdv1.CheckRequest{EmailSha256: b[0][:]})
	if err != nil || resp.GetExposed() || resp.GetCorpusVersion() != 1 {
		t.Fatalf("Check after failed imports = %v, %v; want not exposed at version 1", resp, err)
	}

	// Lookups keep being answered, and stay right, during a real import.
	done := make(chan struct{})
	checkErr := make(chan error, 1)
	go func() {
		defer close(checkErr)
		a := digests("a", 500)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			r, err := f.expo.Check(ctx, &breachdv1.CheckRequest{EmailSha256: a[i%500][:]})
			if err != nil || !r.GetExposed() {
				checkErr <- err
				return
			}
		}
	}()
	sum, err := importStream(t, f.admin, beta, append(b, b[:10]...), 5010)
	close(done)
	if err, ok := <-checkErr; ok {
		t.Fatalf("Check during import failed: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	want := &breachdv1.ImportBreachResponse{Name: "Beta", Received: 5010, Duplicates: 10, NewAccounts: 5000, CorpusVersion: 2}
	if diff := cmp.Diff(want, sum, protocmp.Transform()); diff != "" {
		t.Fatalf("ImportBreach diff (-want +got):\n%s", diff)
	}
	resp, err = f.expo.Check(ctx, &breachdv1.CheckRequest{EmailSha256: b[4999][:]})
	if err != nil || !resp.GetExposed() || resp.GetBreaches()[0].GetName() != "Beta" || resp.GetCorpusVersion() != 2 {
		t.Fatalf("Check after import = %v, %v", resp, err)
	}
}

// TestImportStreamEndings covers streams that end in ways that must commit
// nothing, each with INVALID_ARGUMENT and a message.
func TestImportStreamEndings(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, server.Options{Admin: true})
	stream, err := f.admin.ImportBreach(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.CloseAndRecv()
	wantCode(t, err, codes.InvalidArgument, "the stream ended before its first message")

	_, err = importStream(t, f.admin, &breachdv1.Breach{Name: "Empty", Title: "Empty"}, nil, 0)
	wantCode(t, err, codes.InvalidArgument, "import received no digests for breach Empty: nothing was committed")
	list, err := f.expo.ListBreaches(t.Context(), &breachdv1.ListBreachesRequest{})
	if err != nil || list.GetCorpusVersion() != 1 || len(list.GetBreaches()) != 1 {
		t.Fatalf("after the refused imports ListBreaches = %v, %v; want only Alpha at version 1", list, err)
	}
}

func TestAdminImportInvalid(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0, server.Options{Admin: true})
	_, err := importStream(t, f.admin, &breachdv1.Breach{Name: "bad name", Title: "x"}, nil, 0)
	wantCode(t, err, codes.InvalidArgument, "ImportBreachRequest.breach")

	stream, err := f.admin.ImportBreach(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_EmailSha256{EmailSha256: make([]byte, 32)}})
	_, err = stream.CloseAndRecv()
	wantCode(t, err, codes.InvalidArgument, "first message must carry the breach")

	_, err = importStream(t, f.admin, &breachdv1.Breach{Name: "B", Title: "B"}, []breachd.Digest{{}}, 1)
	if err != nil {
		t.Fatalf("valid import = %v", err)
	}
	stream, _ = f.admin.ImportBreach(t.Context())
	stream.Send(&breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_Breach{Breach: &breachdv1.Breach{Name: "C", Title: "C"}}})
	stream.Send(&breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_EmailSha256{EmailSha256: make([]byte, 33)}})
	_, err = stream.CloseAndRecv()
	wantCode(t, err, codes.InvalidArgument, "want a multiple of 32")
}

// TestShutdownEndsBulkStreams checks that shutdown does not wait for a bulk
// stream to end by itself: the stream ends with UNAVAILABLE, saying how to
// resume, and shutdown returns long before its bound.
func TestShutdownEndsBulkStreams(t *testing.T) {
	t.Parallel()
	srv := daemontest.Start(t, t.TempDir(), nil, nil)
	if _, err := daemontest.Import(t.Context(), srv, alpha, digests("a", 10)); err != nil {
		t.Fatal(err)
	}
	conn := daemontest.Dial(t, srv)
	stream, err := breachdv1.NewExposureServiceClient(conn).CheckStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&breachdv1.CheckStreamRequest{EmailSha256: pack(digests("a", 5))}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	_, err = stream.Recv()
	wantCode(t, err, codes.Unavailable, "resume")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v with a bulk stream open, want it ended at once", d)
	}
}

// TestImportIdleTimeout checks that an import stream that goes silent is
// ended, and frees the import lock for the next import.
func TestImportIdleTimeout(t *testing.T) {
	t.Parallel()
	srv := daemontest.Start(t, t.TempDir(), func(c *daemon.Config) { c.ImportIdleTimeout = 300 * time.Millisecond }, nil)
	admin := breachdv1.NewAdminServiceClient(daemontest.DialAdmin(t, srv))
	stream, err := admin.ImportBreach(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_Breach{Breach: &breachdv1.Breach{Name: "Idle", Title: "Idle"}}})
	stream.Send(&breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_EmailSha256{EmailSha256: pack(digests("i", 3))}})
	for !srv.Emails().Importing() { // it holds the import lock
		time.Sleep(time.Millisecond)
	}
	// ... and sends nothing more. The next import waits for the lock, then runs.
	resp, err := importStream(t, admin, &breachdv1.Breach{Name: "Next", Title: "Next"}, digests("n", 10), 10)
	if err != nil || resp.GetCorpusVersion() != 1 {
		t.Fatalf("import after an idle one = %v, %v", resp, err)
	}
	_, err = stream.CloseAndRecv()
	wantCode(t, err, codes.FailedPrecondition, "nothing arrived for 300ms after 3 digests")
}

func TestAssessInvalid(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, server.Options{})
	as := breachdv1.NewAssessServiceClient(f.conn)
	d := digests("a", 1)[0]
	for _, tt := range []struct {
		req *breachdv1.AssessRequest
		msg string
	}{
		{&breachdv1.AssessRequest{EmailSha256: d[:31]}, "AssessRequest.email_sha256: got 31 bytes, want 32"},
		{&breachdv1.AssessRequest{EmailSha256: d[:], PasswordSha1: make([]byte, 32)}, "AssessRequest.password_sha1: got 32 bytes, want 20 (the SHA-1 of the password) or none"},
		{&breachdv1.AssessRequest{EmailSha256: d[:], Context: 9}, "AssessRequest.context: 9 is not a context"},
	} {
		_, err := as.Assess(t.Context(), tt.req)
		wantCode(t, err, codes.InvalidArgument, tt.msg)
	}
	// Without a policy every answer is allow; the facts are there.
	resp, err := as.Assess(t.Context(), &breachdv1.AssessRequest{EmailSha256: d[:], PasswordSha1: make([]byte, 20), Context: breachdv1.AssessContext_ASSESS_CONTEXT_LOGIN})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDecision() != breachdv1.Decision_DECISION_ALLOW || !resp.GetEnforced() || len(resp.GetBreaches()) != 1 ||
		resp.GetBreaches()[0].GetBreach().GetName() != "Alpha" || resp.GetBreaches()[0].GetPasswordStatus() != breachdv1.PasswordStatus_PASSWORD_STATUS_UNKNOWN {
		t.Errorf("Assess of an exposed account = %v", resp)
	}
}

// TestMinCorpusVersion: every read of the email corpus that names a
// minimum version is refused UNAVAILABLE (a replica that has not caught
// up) below it, and answered at or above it. (Private checks' share of it
// is cmd/breachd's TestPrivateDaemon: they need a keyed corpus.)
func TestMinCorpusVersion(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, server.Options{})
	as := breachdv1.NewAssessServiceClient(f.conn)
	d := digests("a", 1)[0]
	for _, tt := range []struct {
		name string
		call func(min uint64) error
	}{
		{"Check", func(min uint64) error {
			_, err := f.expo.Check(t.Context(), &breachdv1.CheckRequest{EmailSha256: d[:], MinCorpusVersion: min})
			return err
		}},
		{"Assess", func(min uint64) error {
			_, err := as.Assess(t.Context(), &breachdv1.AssessRequest{EmailSha256: d[:], MinCorpusVersion: min})
			return err
		}},
		{"ListBreaches", func(min uint64) error {
			_, err := f.expo.ListBreaches(t.Context(), &breachdv1.ListBreachesRequest{MinCorpusVersion: min})
			return err
		}},
	} {
		if err := tt.call(1); err != nil {
			t.Errorf("%s at the corpus's version: %v", tt.name, err)
		}
		wantCode(t, tt.call(2), codes.Unavailable, "behind the version 2 asked for")
	}
}
