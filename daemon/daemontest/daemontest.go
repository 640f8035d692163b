package daemontest

import (
	"context"
	"log/slog"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/store"
)

// Config returns a daemon's configuration for tests: the data directory
// dir, a port of the system's choosing on loopback, and corpora with
// test-sized Badger memtables and unpaced scans.
func Config(dir string) daemon.Config {
	c := daemon.DefaultConfig()
	c.Data, c.Addr = dir, "127.0.0.1:0"
	c.AdminSocket = store.AdminSocket(dir) // admin calls: DialAdmin
	c.Emails.MemTableSize, c.Passwords.MemTableSize = 4<<20, 4<<20
	c.Emails.BackgroundShare, c.Passwords.BackgroundShare = 1, 1
	c.Emails.ExpectedKeys, c.Passwords.ExpectedKeys = 4096, 4096
	return c
}

// Start starts a daemon with Config(dir), changed by edit if not nil, and
// closes it when the test ends. log may be nil.
func Start(tb testing.TB, dir string, edit func(*daemon.Config), log *slog.Logger) *daemon.Daemon {
	tb.Helper()
	c := Config(dir)
	if edit != nil {
		edit(&c)
	}
	d, err := daemon.Start(context.Background(), c, log)
	if err != nil {
		tb.Fatalf("daemon.Start = %v", err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// Dial returns a plaintext client connection to d, closed when the test ends.
func Dial(tb testing.TB, d *daemon.Daemon) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(d.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// DialAdmin returns a client connection to d's admin socket (every
// service, admin included, without credentials), closed when the test
// ends. Over TCP a daemon without TLS refuses admin calls.
func DialAdmin(tb testing.TB, d *daemon.Daemon) *grpc.ClientConn {
	tb.Helper()
	if d.AdminSocket() == "" {
		tb.Fatal("the daemon has no admin socket")
	}
	conn, err := grpc.NewClient("unix://"+d.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// Import imports breach b with digests ds straight into d's use cases (not
// through the AdminService), in batches of at most breachd.MaxBatch.
func Import(ctx context.Context, d *daemon.Daemon, b breachd.Breach, ds []breachd.Digest) (breachd.ImportStats, error) {
	return d.Service().Import(ctx, b, func(yield func([]breachd.Digest, error) bool) {
		for len(ds) > 0 {
			n := min(len(ds), breachd.MaxBatch)
			if !yield(ds[:n], nil) {
				return
			}
			ds = ds[n:]
		}
	})
}
