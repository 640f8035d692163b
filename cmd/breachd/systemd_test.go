package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/certs/certstest"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/internal/logtest"
	"github.com/breachd/breachd/internal/porttest"
	"github.com/breachd/breachd/store"
)

// TestSystemdService runs the deployment deploy/breachd.service describes,
// simulated: the daemon as a user that is not root (DynamicUser) on a state
// directory it owns (StateDirectory, 0700), its TLS key from a credentials
// directory (LoadCredential=, %d), an API key created by root, the corpus
// loaded by root through the running service's admin socket. An offline
// command run by root on that directory refuses, rather than leave
// root-owned files the service cannot open (the README's session broke the
// service that way). /readyz answers 200. No file the service writes is
// readable by others (Badger's tables were 0644).
func TestSystemdService(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the daemon as another user (CI runs as root)")
	}
	if testing.Short() {
		t.Skip("builds and starts a daemon")
	}
	t.Parallel()
	const uid, gid = 61234, 61234
	bin := tools(t)
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o711) // the service user must reach its directories, as under /var/lib
	}
	state, creds := filepath.Join(dir, "state"), filepath.Join(dir, "credentials")
	for _, d := range []string{state, creds} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ca := certstest.NewCA(t, creds, "ca")
	cert, key, _ := ca.Issue(t, "tls", certstest.Server("breachd"))
	for _, p := range []string{state, creds, cert, key} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(key, 0o400)
	apiKey := filepath.Join(dir, "sso.key")
	runOK(t, "keys", "create", "--data", state, "--name", "sso", "--scopes", "check", "--out", apiKey)

	port, metrics := freePort(t), freePort(t)
	cmd := exec.Command(filepath.Join(bin, "breachd"), "serve")
	cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY="+creds,
		"BREACHD_DATA="+state, "BREACHD_ADDR=127.0.0.1:"+port, "BREACHD_METRICS_ADDR=127.0.0.1:"+metrics,
		"BREACHD_TLS_CERT="+filepath.Join(creds, "tls.pem"), "BREACHD_TLS_KEY="+filepath.Join(creds, "tls-key.pem"),
		"BREACHD_ADMIN_SOCKET="+store.AdminSocket(state), "BREACHD_TLS_CLIENT_AUTH=require")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	runProcess(t, cmd, metrics) // /readyz answers 200 under client_auth: require

	manifest, dump := filepath.Join(dir, "m.json"), filepath.Join(dir, "dump.csv")
	os.WriteFile(manifest, []byte(`{"Name":"SegaPass","Title":"Sega Pass"}`), 0o644)
	os.WriteFile(dump, []byte("email\nlschmidt@hotmail.com\n"), 0o644)
	err := run(t.Context(), []string{"import", "--data", state, "--manifest", manifest, dump}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("belongs to uid %d", uid)) {
		t.Fatalf("an offline import by root into the service's directory: %v; want it refused", err)
	}
	runOK(t, "import", "--addr", "unix://"+store.AdminSocket(state), "--manifest", manifest, dump)

	// An mTLS-less API key under client_auth: require is refused; the
	// service's answers are checked with the key and no certificate
	// under verify-if-given in TestClientCertificateRequired. Here the
	// key holder shows a client certificate.
	ccert, ckey, _ := ca.Issue(t, "client", certstest.Leaf{CN: "sso-gateway", Client: true})
	k, err := client.ReadAPIKey(apiKey)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := client.Dial("localhost:"+port, client.DialOptions{CAFile: ca.File, CertFile: ccert, KeyFile: ckey, APIKey: k})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d, _ := canon.Digest("lschmidt@hotmail.com")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res, err := client.New(conn).CheckDigest(ctx, d)
	if err != nil || !res.Exposed {
		t.Fatalf("Check through the service: %+v, %v", res, err)
	}
	// Nothing in the state directory is root's.
	filepath.WalkDir(state, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := e.Info()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uid {
			t.Errorf("%s belongs to uid %d, not the service's %d", p, st.Uid, uid)
		}
		if fi.Mode().Type() != fs.ModeSocket && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: others may read it", p, fi.Mode().Perm())
		}
		return nil
	})
}

// freePort reserves a loopback port for a daemon in another process.
func freePort(t *testing.T) string {
	p, err := porttest.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(p)
}

// runProcess starts cmd, a 'breachd serve' with its metrics listener on
// 127.0.0.1:metrics, and waits until /readyz answers 200 (failing the test
// with why after a minute). The daemon is stopped with SIGTERM when the test
// ends; its log, returned, is printed if the test failed.
func runProcess(t *testing.T, cmd *exec.Cmd, metrics string) *logtest.Buffer {
	t.Helper()
	logs := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = io.Discard, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	ready := func() bool {
		resp, err := http.Get("http://127.0.0.1:" + metrics + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	for deadline := time.Now().Add(60 * time.Second); !ready(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's /readyz never answered 200:\n%s", logs.String())
		}
	}
	return logs
}
