package daemon_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/daemon/daemontest"
	"github.com/breachd/breachd/internal/logtest"
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
		c.Watch.Webhooks = []webhook.Endpoint{{URL: url, Secret: []byte("0123456789abcdef0123")}}
	}, log)
	out := logs.String()
	if !strings.Contains(out, "watch.webhooks is set on a replica") || !strings.Contains(out, "endpoints=1") {
		t.Fatalf("no warning about the replica's webhooks in:\n%s", out)
	}
	if strings.Contains(out, "hooks.example") {
		t.Fatalf("the log names an endpoint (its URL may hold a secret):\n%s", out)
	}
}
