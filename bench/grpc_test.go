package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/server/servertest"
)

// corpusKeys is the corpus size: the Sega Pass account count unless
// BREACHD_BENCH_KEYS says otherwise.
func corpusKeys(tb testing.TB) int {
	if s := os.Getenv("BREACHD_BENCH_KEYS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			tb.Fatalf("BREACHD_BENCH_KEYS: %v", err)
		}
		return n
	}
	return 1_290_775
}

func digests(set string, n int) []breachd.Digest {
	out := make([]breachd.Digest, n)
	for i := range out {
		out[i] = sha256.Sum256(binary.BigEndian.AppendUint64([]byte(set), uint64(i)))
	}
	return out
}

type fixture struct {
	conn    *grpc.ClientConn
	present []breachd.Digest
	absent  []breachd.Digest
}

var (
	fixOnce sync.Once
	fix     fixture
	fixErr  error
	fixDone func()
)

// daemon builds a store of corpusKeys digests once per process and serves it
// with the production server over 127.0.0.1.
func daemon(b *testing.B) fixture {
	b.Helper()
	fixOnce.Do(func() { fixErr = startDaemon(corpusKeys(b)) })
	if fixErr != nil {
		b.Fatal(fixErr)
	}
	return fix
}

func startDaemon(n int) error {
	dir, err := os.MkdirTemp("", "breachd-bench")
	if err != nil {
		return err
	}
	srv, err := servertest.Start(filepath.Join(dir, "data"), servertest.Options{})
	if err != nil {
		return err
	}
	present := digests("present", n)
	b := breachd.Breach{Name: "Bench", Title: "Bench", BreachDate: "2011-06-17", DataClasses: []string{"Email addresses"}}
	if _, err := srv.Import(context.Background(), b, present); err != nil {
		return err
	}
	conn, err := srv.Dial()
	if err != nil {
		return err
	}
	fix = fixture{conn: conn, present: present, absent: digests("absent", 1<<16)}
	fixDone = func() {
		conn.Close()
		srv.Close()
		os.RemoveAll(dir)
	}
	return nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixDone != nil {
		fixDone()
	}
	os.Exit(code)
}

// BenchmarkCheck is one unary Check over loopback, for a digest the filter
// rejects (absent) and one that Badger confirms (present), and the server's
// gRPC health Check as the no-op baseline.
func BenchmarkCheck(b *testing.B) {
	f := daemon(b)
	exposure := breachdv1.NewExposureServiceClient(f.conn)
	health := healthpb.NewHealthClient(f.conn)
	ctx := context.Background()
	check := func(ds []breachd.Digest, want bool) func(i int) error {
		return func(i int) error {
			d := ds[(i*7919)%len(ds)]
			resp, err := exposure.Check(ctx, &breachdv1.CheckRequest{EmailSha256: d[:]})
			if err == nil && resp.GetExposed() != want {
				b.Fatalf("Check exposed = %v, want %v", resp.GetExposed(), want)
			}
			return err
		}
	}
	for _, bc := range []struct {
		name string
		call func(i int) error
	}{
		{"health", func(int) error {
			_, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		}},
		{"absent", check(f.absent, false)},
		{"present", check(f.present, true)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := bc.call(i); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32) // 64 callers on 2 cores, as the load generator
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if err := bc.call(i); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkCheckStream is one CheckStream batch of 1,000 digests, 95% absent,
// sent and answered on an open stream over loopback: serially (one batch at
// a time) and with several streams busy at once.
func BenchmarkCheckStream(b *testing.B) {
	f := daemon(b)
	const batch = 1000
	packed := make([][]byte, 64)
	for j := range packed {
		for i := range batch {
			var d breachd.Digest
			if i%20 == 0 {
				d = f.present[(j*batch+i)*7919%len(f.present)]
			} else {
				d = f.absent[(j*batch+i)%len(f.absent)]
			}
			packed[j] = append(packed[j], d[:]...)
		}
	}
	exposure := breachdv1.NewExposureServiceClient(f.conn)
	run := func(b *testing.B, next func() bool) {
		stream, err := exposure.CheckStream(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		defer stream.CloseSend()
		req := &breachdv1.CheckStreamRequest{}
		resp := &breachdv1.CheckStreamResponse{}
		for i := 0; next(); i++ {
			req.EmailSha256 = packed[i%len(packed)]
			if err := stream.Send(req); err != nil {
				b.Error(err)
				return
			}
			if err := stream.RecvMsg(resp); err != nil {
				b.Error(err)
				return
			}
			if resp.Count != batch || len(resp.ExposedIndex) != batch/20 {
				b.Errorf("answer for %d digests with %d exposed, want %d and %d", resp.Count, len(resp.ExposedIndex), batch, batch/20)
				return
			}
		}
	}
	b.Run("batch=1000", func(b *testing.B) {
		b.ReportAllocs()
		run(b, b.Loop)
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "digests/s")
	})
	b.Run("batch=1000/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(2)
		b.RunParallel(func(pb *testing.PB) { run(b, pb.Next) })
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "digests/s")
	})
}
