package daemon_test

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/certs/certstest"
	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/daemon/daemontest"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/policy"
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

// TestPolicyPrincipalsWarned: a policy of its own for a principal that no
// caller can be (a misspelt name; any name on a daemon without TLS, which
// identifies no one) is logged at start, by principal; one that a key
// identifies is not.
func TestPolicyPrincipalsWarned(t *testing.T) {
	t.Parallel()
	policies := map[string]policy.Policy{"sso": {}, "ssoo": {}}
	for _, tc := range []struct {
		name   string
		tls    bool
		warned []string
	}{
		{"without TLS", false, []string{"principal=sso\n", "principal=ssoo\n"}},
		{"with TLS and a key for sso", true, []string{"principal=ssoo\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			logs := &logtest.Buffer{}
			log := slog.New(slog.NewTextHandler(logs, nil))
			if _, err := auth.CreateKey(dir, "sso", []auth.Scope{auth.ScopeCheck}, 0, 0); err != nil {
				t.Fatal(err)
			}
			daemontest.Start(t, dir, func(c *daemon.Config) {
				c.Policy.ByPrincipal = policies
				if tc.tls {
					ca := certstest.NewCA(t, t.TempDir(), "ca")
					cert, key, _ := ca.Issue(t, "server", certstest.Server("breachd"))
					c.TLS = &daemon.TLS{Cert: cert, Key: key}
				}
			}, log)
			out := logs.String()
			if n := strings.Count(out, "policy.principals:"); n != len(tc.warned) {
				t.Fatalf("%d warnings, want %d:\n%s", n, len(tc.warned), out)
			}
			for _, w := range tc.warned {
				if !strings.Contains(out, w) {
					t.Errorf("no warning for %s:\n%s", w, out)
				}
			}
		})
	}
}

// TestIdentitiesNeedClientCA: client certificates mapped to principals on
// a daemon that asks for none (no client CA) are refused at start, saying
// what to set: they would map no caller, every one refused as anonymous.
func TestIdentitiesNeedClientCA(t *testing.T) {
	t.Parallel()
	ca := certstest.NewCA(t, t.TempDir(), "ca")
	cert, key, _ := ca.Issue(t, "server", certstest.Server("breachd"))
	c := daemontest.Config(t.TempDir())
	c.TLS = &daemon.TLS{Cert: cert, Key: key}
	c.Auth.Identities = []auth.CertIdentity{{Match: "CN=sso-gateway", Principal: auth.Principal{Name: "sso", Scopes: []auth.Scope{auth.ScopeCheck}}}}
	if _, err := daemon.Start(t.Context(), c, nil); err == nil || !strings.Contains(err.Error(), "tls.client_ca") {
		t.Fatalf("identities without a client CA: %v, want a refusal naming tls.client_ca", err)
	}
	c.TLS.ClientCA = ca.File
	d, err := daemon.Start(t.Context(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
}

// TestTrustedProxiesNeedTLS: trusted proxies on a daemon without TLS (whose
// HTTP face authenticates no one) are refused at start.
func TestTrustedProxiesNeedTLS(t *testing.T) {
	t.Parallel()
	c := daemontest.Config(t.TempDir())
	c.HTTPAddr = "127.0.0.1:0"
	c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}
	if _, err := daemon.Start(t.Context(), c, nil); err == nil || !strings.Contains(err.Error(), "without TLS the HTTP face authenticates no caller") {
		t.Fatalf("trusted proxies without TLS: %v, want a refusal", err)
	}
}
