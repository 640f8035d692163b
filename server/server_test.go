package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/server"
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
	srv    *server.Server
	conn   *grpc.ClientConn
	expo   breachdv1.ExposureServiceClient
	admin  breachdv1.AdminServiceClient
	health healthpb.HealthClient
}

// newFixture serves a real store over bufconn, with alpha imported from
// digests("a", nAlpha).
func newFixture(tb testing.TB, nAlpha int, opts server.Options) *fixture {
	tb.Helper()
	st, err := store.Open(tb.TempDir(), store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	if nAlpha > 0 {
		ctx := context.Background()
		imp, err := st.BeginImport(ctx, alpha)
		if err != nil {
			tb.Fatal(err)
		}
		if err := imp.Add(ctx, digests("a", nAlpha)); err != nil {
			tb.Fatal(err)
		}
		if _, err := imp.Commit(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	srv := server.New(st, opts)
	lis := bufconn.Listen(1 << 20)
	go srv.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		conn.Close()
		srv.Shutdown(context.Background())
		st.Close()
	})
	return &fixture{st: st, srv: srv, conn: conn, expo: breachdv1.NewExposureServiceClient(conn),
		admin: breachdv1.NewAdminServiceClient(conn), health: healthpb.NewHealthClient(conn)}
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
	f := newFixture(t, 10, server.Options{})
	for _, n := range []int{0, 31, 33, 64} {
		_, err := f.expo.Check(t.Context(), &breachdv1.CheckRequest{EmailSha256: make([]byte, n)})
		wantCode(t, err, codes.InvalidArgument, "CheckRequest.email_sha256: got "+strconv.Itoa(n)+" bytes, want 32")
	}
}

func TestCheckStream(t *testing.T) {
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
	f := newFixture(t, 10, server.Options{})
	tests := []struct {
		name   string
		packed []byte
		msg    string
	}{
		{"empty batch", nil, "empty batch"},
		{"ragged", make([]byte, 95), "got 95 bytes, want a multiple of 32"},
		{"oversized", make([]byte, 32*(server.MaxBatch+1)), "got 10001 digests, want at most 10000"},
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
	wantCode(t, err, codes.NotFound, `unknown breach: "Nope"`)
	_, err = f.expo.GetBreach(t.Context(), &breachdv1.GetBreachRequest{})
	wantCode(t, err, codes.InvalidArgument, "GetBreachRequest.name")
}

func TestHealth(t *testing.T) {
	f := newFixture(t, 0, server.Options{})
	for _, svc := range []string{"", "breachd.v1.ExposureService"} {
		resp, err := f.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q = %v, %v", svc, resp, err)
		}
	}
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	f := newFixture(t, 10, server.Options{})
	f.st.Close()
	_, err := f.expo.Check(t.Context(), &breachdv1.CheckRequest{EmailSha256: make([]byte, 32)})
	wantCode(t, err, codes.Unavailable, "shutting down")
}

func TestAdminDisabled(t *testing.T) {
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

func TestAdminImportInvalid(t *testing.T) {
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
