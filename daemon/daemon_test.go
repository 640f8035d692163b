package daemon_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/daemon/daemontest"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/webhook"
)

// TestReplicaWebhooksWarned: a replica given watch.webhooks (one
// configuration for a writer and its replicas) starts, and says in its log
// that the endpoints get nothing from it, without naming them.
func TestReplicaWebhooksWarned(t *testing.T) {
	t.Parallel()
	logs := &logtest.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	const url = "https://hooks.example/breachd?token=secret"
	daemontest.Start(t, t.TempDir(), func(c *daemon.Config) {
		c.Replication.Follow = "nats://127.0.0.1:1" // never reached: the warning comes at start
		c.Watch.Webhooks = []webhook.Endpoint{{URL: url, Secrets: [][]byte{[]byte("0123456789abcdef0123")}}}
	}, log)
	out := logs.String()
	if !strings.Contains(out, "watch.webhooks is set on a replica") || !strings.Contains(out, "endpoints=1") {
		t.Fatalf("no warning about the replica's webhooks in:\n%s", out)
	}
	if strings.Contains(out, "hooks.example") {
		t.Fatalf("the log names an endpoint (its URL may hold a secret):\n%s", out)
	}
}

// TestReplicaDirNeedsFollow: a replica's data directory started without
// replication.follow is refused, saying why, rather than served as a
// writer's (its last version for good); with it, the replica starts.
func TestReplicaDirNeedsFollow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(store.EmailDir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	// What a replica records once it follows a writer.
	if err := os.WriteFile(filepath.Join(store.EmailDir(dir), natsrepl.FollowedFile), []byte(`{"version":0}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := daemon.Start(t.Context(), daemontest.Config(dir), nil)
	if err == nil || !strings.Contains(err.Error(), "holds a read replica's corpus") || !strings.Contains(err.Error(), "--follow") {
		t.Fatalf("a writer on a replica's directory: %v, want a refusal naming --follow", err)
	}
	daemontest.Start(t, dir, func(c *daemon.Config) { c.Replication.Follow = "nats://127.0.0.1:1" }, nil)
}
