package bench

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/daemon/daemontest"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/store"
)

// BenchmarkKeyedCheckRatio is issue 24's "plain Check on a keyed index
// against plain Check on a plain one": two daemons serving the same
// corpusKeys accounts, one keyed (privacy.index_key_file), in alternated
// rounds of 2,000 Checks from 64 callers each, 95% absent as at signup,
// and the same for CheckStream batches of 1,000 (bulk sweeps). Issue 24
// asks keyed/plain at most 1.2.
func BenchmarkKeyedCheckRatio(b *testing.B) {
	n := corpusKeys(b)
	dir := b.TempDir()
	key, err := store.GenerateIndexKey(filepath.Join(dir, "index.key"))
	if err != nil {
		b.Fatal(err)
	}
	present, absent := digests("present", n), digests("absent", 1<<16)
	start := func(name string, k *store.IndexKey) breachdv1.ExposureServiceClient {
		c := benchConfig(filepath.Join(dir, name))
		c.Emails.IndexKey = k
		srv, err := daemon.Start(context.Background(), c, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { srv.Close() })
		bb := breachd.Breach{Name: "Bench", Title: "Bench"}
		if _, err := daemontest.Import(context.Background(), srv, bb, present); err != nil {
			b.Fatal(err)
		}
		conn, err := client.Dial(srv.Addr(), client.DialOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		return breachdv1.NewExposureServiceClient(conn)
	}
	plain, keyed := start("plain", nil), start("keyed", key)
	ctx := context.Background()
	pick := func(i int) breachd.Digest {
		if i%20 == 0 {
			return present[(i*7919)%len(present)]
		}
		return absent[(i*7919)%len(absent)]
	}
	check := func(cl breachdv1.ExposureServiceClient) func(i int) error {
		return func(i int) error {
			d := pick(i)
			r, err := cl.Check(ctx, &breachdv1.CheckRequest{EmailSha256: d[:]})
			if err == nil && (i%20 == 0) != (len(r.GetBreaches()) > 0) {
				b.Fatalf("Check %d: %d breaches", i, len(r.GetBreaches()))
			}
			return err
		}
	}
	var batch []byte
	for i := range 1000 {
		d := pick(i)
		batch = append(batch, d[:]...)
	}
	stream := func(cl breachdv1.ExposureServiceClient) time.Duration {
		s, err := cl.CheckStream(ctx)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		for range 50 {
			if err := s.Send(&breachdv1.CheckStreamRequest{EmailSha256: batch}); err != nil {
				b.Fatal(err)
			}
			if r, err := s.Recv(); err != nil || len(r.GetExposedIndex()) != 50 {
				b.Fatalf("CheckStream: %d exposed, %v", len(r.GetExposedIndex()), err)
			}
		}
		d := time.Since(t0)
		s.CloseSend()
		return d
	}
	var tp, tk, sp, sk time.Duration
	for b.Loop() {
		tp += round(b, check(plain))
		tk += round(b, check(keyed))
		sp += stream(plain)
		sk += stream(keyed)
	}
	b.ReportMetric(tk.Seconds()/tp.Seconds(), "keyed/plain-check")
	b.ReportMetric(sk.Seconds()/sp.Seconds(), "keyed/plain-stream")
	b.ReportMetric(float64(b.N*2000)/tk.Seconds(), "keyed-check-qps")
}
