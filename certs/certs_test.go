package certs_test

import (
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/breachd/breachd/certs"
	"github.com/breachd/breachd/certs/certstest"
	"github.com/breachd/breachd/internal/logtest"
)

// TestWatch checks that a rotation of the certificate is picked up, that
// unrelated files in the same directory cause no reload, that a broken
// pair keeps the certificate in use, and that only changes are logged.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, dir, "ca")
	cert, key, first := ca.Issue(t, "server", certstest.Server("a"))
	var logs logtest.Buffer
	r, err := certs.Load(certs.Files{Cert: cert, Key: key}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go r.Watch(t.Context())
	serial := func() string {
		c, err := r.ServerConfig().GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Certificates[0].Leaf.SerialNumber.String()
	}
	time.Sleep(100 * time.Millisecond) // let the watcher start
	for i := range 20 {
		os.WriteFile(filepath.Join(dir, "unrelated"), []byte{byte(i)}, 0o600)
	}
	time.Sleep(400 * time.Millisecond)
	if n := r.Loads(); n != 1 {
		t.Fatalf("%d loads after writes to an unrelated file, want 1", n)
	}
	os.WriteFile(key, []byte("not a key"), 0o600) // a broken pair: keep the old
	time.Sleep(400 * time.Millisecond)
	if got := serial(); got != first.String() {
		t.Fatalf("serving %s after a broken key, want the old %s", got, first)
	}
	_, _, next := ca.Issue(t, "server", certstest.Server("a"))
	deadline := time.Now().Add(5 * time.Second)
	for serial() != next.String() {
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate was not picked up within 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The reload logs just after it swaps the certificate in: wait for it.
	for strings.Count(logs.String(), "TLS certificate loaded") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "TLS certificate loaded"); n != 2 {
		t.Errorf("%d 'TLS certificate loaded' lines, want 2 (start and rotation):\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "reloading TLS files failed") {
		t.Errorf("the broken key was not logged:\n%s", logs.String())
	}
}
