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
// pair keeps the certificate in use, and that only changes are logged. The
// watcher reloads at once after each change (no settling pause), so each
// step waits for the event it causes, never for time to pass.
func TestWatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := certstest.NewCA(t, dir, "ca")
	cert, key, first := ca.Issue(t, "server", certstest.Server("a"))
	goodKey, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	var logs logtest.Buffer
	r, err := certs.Load(certs.Files{Cert: cert, Key: key}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.SetSettle(0)
	go r.Watch(t.Context())
	serial := func() string {
		c, err := r.ServerConfig().GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Certificates[0].Leaf.SerialNumber.String()
	}
	failures := func() int { return strings.Count(logs.String(), "reloading TLS files failed") }
	// writeKey replaces the key file in one rename, as a secret update
	// does: one change, one reload (a write in place is two: the file
	// truncated, then written).
	writeKey := func(b []byte) {
		t.Helper()
		tmp := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, key); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s; log:\n%s", what, logs.String())
			}
			time.Sleep(5 * time.Millisecond) // polls for an event
		}
	}
	// A broken pair keeps the certificate in use. Writing it until the
	// failure is logged also tells that the watcher is running.
	// A write before the watcher runs makes no event; one after makes one,
	// handled well within a second. (A second write while the first is
	// pending would make a stray reload that reads the key restored below.)
	for attempt := 0; failures() == 0; attempt++ {
		if attempt == 10 {
			t.Fatalf("the watcher did not report a broken key in 10 tries:\n%s", logs.String())
		}
		writeKey([]byte("not a key"))
		for deadline := time.Now().Add(time.Second); failures() == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond) // polls for the event
		}
	}
	if got := serial(); got != first.String() {
		t.Fatalf("serving %s after a broken key, want the old %s", got, first)
	}
	// The good key back: a reload that finds the same pair (it counts, it
	// does not log).
	loads := r.Loads()
	writeKey(goodKey)
	waitFor("the restored key to load", func() bool { return r.Loads() > loads })
	// Unrelated files, then a broken key again: each change is handled in
	// order, so once the broken key's failure is logged every unrelated
	// write has been seen, and none may have reloaded.
	loads, failed := r.Loads(), failures()
	for i := range 20 {
		os.WriteFile(filepath.Join(dir, "unrelated"), []byte{byte(i)}, 0o600)
	}
	writeKey([]byte("not a key"))
	waitFor("the second broken key to be reported", func() bool { return failures() > failed })
	if n := r.Loads(); n != loads {
		t.Fatalf("%d loads after writes to an unrelated file, want %d", n, loads)
	}
	// A rotation is picked up.
	_, _, next := ca.Issue(t, "server", certstest.Server("a"))
	waitFor("the rotated certificate", func() bool { return serial() == next.String() })
	// The reload logs just after it swaps the certificate in: wait for it.
	waitFor("the rotation's log line", func() bool { return strings.Count(logs.String(), "TLS certificate loaded") >= 2 })
	if n := strings.Count(logs.String(), "TLS certificate loaded"); n != 2 {
		t.Errorf("%d 'TLS certificate loaded' lines, want 2 (start and rotation):\n%s", n, logs.String())
	}
}

// TestUnusableCertificates: a certificate every client would refuse is
// refused at start, and on reload the one in use stays.
func TestUnusableCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := certstest.NewCA(t, dir, "ca")
	now := time.Now()
	bad := []struct {
		name string
		leaf certstest.Leaf
		want string
	}{
		{"expired", certstest.Leaf{CN: "a", NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}, "expired on"},
		{"future", certstest.Leaf{CN: "a", NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)}, "not valid before"},
		{"ca", certstest.Leaf{CN: "a", CA: true}, "certificate authority"},
		{"client", certstest.Leaf{CN: "a", Client: true}, "server authentication"},
	}
	for _, c := range bad {
		cert, key, _ := ca.Issue(t, c.name, c.leaf)
		if _, err := certs.Load(certs.Files{Cert: cert, Key: key}, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Load = %v, want an error saying %q", c.name, err, c.want)
		}
	}
	// A key that is not the certificate's.
	cert, _, _ := ca.Issue(t, "one", certstest.Server("a"))
	_, otherKey, _ := ca.Issue(t, "two", certstest.Server("a"))
	if _, err := certs.Load(certs.Files{Cert: cert, Key: otherKey}, nil); err == nil {
		t.Error("Load took a certificate with another certificate's key")
	}
	// On reload, the certificate in use stays.
	cert, key, _ := ca.Issue(t, "server", certstest.Server("a"))
	r, err := certs.Load(certs.Files{Cert: cert, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	was := r.NotAfter()
	ca.Issue(t, "server", certstest.Leaf{CN: "a", NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Reload of an expired certificate = %v", err)
	}
	if !r.NotAfter().Equal(was) {
		t.Error("a refused reload replaced the certificate in use")
	}
}
