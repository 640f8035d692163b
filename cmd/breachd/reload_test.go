package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd/certs/certstest"
	"github.com/breachd/breachd/client"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// TestReloadIdentities: a SIGHUP re-reads auth.mtls_identities (finding 8:
// they needed a restart). A certificate's open stream ends when its
// identity loses the scope; an invalid table is refused and the old one
// kept; an unmapped certificate is refused. A real process, real signals.
func TestReloadIdentities(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a daemon")
	}
	t.Parallel()
	bin := tools(t)
	dir := t.TempDir()
	data, cfg := filepath.Join(dir, "data"), filepath.Join(dir, "breachd.yaml")
	manifest, dump := filepath.Join(dir, "m.json"), filepath.Join(dir, "dump.csv")
	os.WriteFile(manifest, []byte(`{"Name":"SegaPass","Title":"Sega Pass"}`), 0o600)
	os.WriteFile(dump, []byte("email\nlschmidt@hotmail.com\n"), 0o600)
	runOK(t, "import", "--data", data, "--manifest", manifest, dump)
	ca := certstest.NewCA(t, dir, "ca")
	cert, key, _ := ca.Issue(t, "server", certstest.Server("breachd"))
	ccert, ckey, _ := ca.Issue(t, "client", certstest.Leaf{CN: "sso-gateway", Client: true})
	writeConfig := func(identities string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte("auth:\n  mtls_identities:\n"+identities), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("    - match: CN=sso-gateway\n      name: sso\n      scopes: [check, bulk]\n")

	port, metrics := freePort(t), freePort(t)
	cmd := exec.Command(filepath.Join(bin, "breachd"), "serve", "--config", cfg, "--data", data, "--addr", "127.0.0.1:"+port,
		"--metrics-addr", "127.0.0.1:"+metrics, "--tls-cert", cert, "--tls-key", key, "--client-ca", ca.File)
	logs := runProcess(t, cmd, metrics)
	conn, err := client.Dial("localhost:"+port, client.DialOptions{CAFile: ca.File, CertFile: ccert, KeyFile: ckey})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	expo := breachdv1.NewExposureServiceClient(conn)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	check := func() error {
		_, err := expo.Check(ctx, &breachdv1.CheckRequest{EmailSha256: make([]byte, 32)})
		return err
	}
	if err := check(); err != nil {
		t.Fatalf("Check with the mapped certificate: %v", err)
	}
	st, err := expo.CheckStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&breachdv1.CheckStreamRequest{EmailSha256: make([]byte, 64)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatalf("the stream's first answer: %v", err)
	}

	// The identity loses bulk: its open stream ends, Check still answers.
	writeConfig("    - match: CN=sso-gateway\n      name: sso\n      scopes: [check]\n")
	cmd.Process.Signal(syscall.SIGHUP)
	start := time.Now()
	if _, err := st.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("an open stream after its identity lost the scope: %v; want UNAUTHENTICATED", err)
	}
	t.Logf("the stream ended %v after SIGHUP", time.Since(start))
	if err := check(); err != nil {
		t.Fatalf("Check after the reload: %v", err)
	}
	if st, err := expo.CheckStream(ctx); err == nil {
		st.Send(&breachdv1.CheckStreamRequest{EmailSha256: make([]byte, 32)})
		if _, err := st.Recv(); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a new stream without the bulk scope: %v; want PERMISSION_DENIED", err)
		}
	}

	// An invalid table is refused, and the one in use kept.
	writeConfig("    - match: sso-gateway\n      name: sso\n      scopes: [check]\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(logs.String(), "mtls_identities") })
	if err := check(); err != nil {
		t.Fatalf("Check after an invalid reload: %v; want the old identities kept", err)
	}

	// No identity maps the certificate any more.
	writeConfig("    - match: CN=someone-else\n      name: other\n      scopes: [check]\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, func() bool { return status.Code(check()) == codes.Unauthenticated })
	if err := check(); !strings.Contains(err.Error(), "maps to no principal") {
		t.Fatalf("Check with an unmapped certificate: %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still not so after %v", d)
		}
	}
}
