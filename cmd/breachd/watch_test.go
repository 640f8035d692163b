package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/webhook"
)

// eventReceiver is a webhook endpoint that checks every signature and
// records the events it accepted; down, it answers 503.
type eventReceiver struct {
	secret []byte
	mu     sync.Mutex
	down   bool
	bodies map[string]string              // id -> body: a repeat must be the same event
	got    map[string]map[string]struct{} // type -> accounts
	bad    []string
	posts  int
}

func (r *eventReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.posts++
	if r.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if err := webhook.Verify(r.secret, req.Header, body, 5*time.Minute); err != nil {
		r.bad = append(r.bad, err.Error())
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var ev breachd.Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID != req.Header.Get("webhook-id") {
		r.bad = append(r.bad, fmt.Sprintf("not an event: %v", err))
		http.Error(w, "bad event", http.StatusBadRequest)
		return
	}
	// The same id must carry the same accounts (time may differ).
	key := ev.Type + " " + ev.Subject + " " + ev.Data.Breach + " " + strings.Join(ev.Data.Accounts, ",")
	if prev, ok := r.bodies[ev.ID]; ok && prev != key {
		r.bad = append(r.bad, "event "+ev.ID+" repeated with other content")
	}
	r.bodies[ev.ID] = key
	if r.got[ev.Type] == nil {
		r.got[ev.Type] = map[string]struct{}{}
	}
	for _, a := range ev.Data.Accounts {
		r.got[ev.Type][a+" "+ev.Data.Breach] = struct{}{}
	}
}

func (r *eventReceiver) count(typ string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got[typ])
}

func (r *eventReceiver) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

// TestWatchEndToEnd runs the real daemon and CLI: a watchlist of accounts
// (by email, canonicalised and hashed by breachctl), then an import
// holding 1,000 of them among many others: exactly those 1,000 reach a real
// receiver as signed "added" events. With the receiver down, the breach is
// deleted and the daemon killed with SIGKILL while the "removed" events
// wait; restarted, and the receiver back, every one arrives, a repeat only
// under its id. The same events page through 'breachctl watch events'.
// WATCH_E2E_SCALE=full runs the sizes (1M watched, a 1.29M-row
// breach, 20 s down): make watch-e2e.
func TestWatchEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a daemon")
	}
	t.Parallel()
	watched, rows, downFor := 10_000, 15_000, time.Second
	if os.Getenv("WATCH_E2E_SCALE") == "full" {
		watched, rows, downFor = 1_000_000, 1_290_000, 20*time.Second
	}
	const overlap = 1000
	bin := tools(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	secretFile := filepath.Join(dir, "webhook.secret")
	os.WriteFile(secretFile, []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"), 0o600)
	secret, _ := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	recv := &eventReceiver{secret: secret, bodies: map[string]string{}, got: map[string]map[string]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: recv}
	go hs.Serve(ln)
	defer hs.Close()

	// Something in the corpus before, so that a watchlist's baseline is real.
	manifest, old := filepath.Join(dir, "old.json"), filepath.Join(dir, "old.txt")
	os.WriteFile(manifest, []byte(`{"Name":"Old","Title":"An old breach"}`), 0o600)
	os.WriteFile(old, []byte("w0@watch.example\nw1@watch.example\n"), 0o600)
	runOK(t, "import", "--data", data, "--manifest", manifest, old)

	cfg := filepath.Join(dir, "breachd.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "watch:\n  retry_for: 10m\n  webhooks:\n    - url: http://%s/hook\n      secret_file: %s\n", ln.Addr(), secretFile), 0o600)
	admin := "unix://" + filepath.Join(data, "breachd.sock")
	metrics := freePort(t)
	start := func() *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, "breachd"), "serve", "--config", cfg, "--data", data, "--addr", "127.0.0.1:"+freePort(t),
			"--metrics-addr", "127.0.0.1:"+metrics)
		runProcess(t, cmd, metrics)
		return cmd
	}
	ctl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(bin, "breachctl"), append([]string{"--addr", admin}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("breachctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	daemon := start()

	var wl bytes.Buffer
	wl.WriteString("email\n")
	for i := range watched {
		fmt.Fprintf(&wl, "W%d@Watch.Example\n", i) // canonicalised by breachctl
	}
	wlFile := filepath.Join(dir, "users.csv")
	os.WriteFile(wlFile, wl.Bytes(), 0o600)
	ctl("watch", "create", "users")
	if out := ctl("watch", "add", "users", "--file", wlFile); !strings.Contains(out, fmt.Sprintf("%d accounts on it", watched)) {
		t.Fatalf("watch add: %s", out)
	}

	// The breach: 1,000 watched accounts (not w0 and w1, which Old holds:
	// their exposure predates the watchlist, and Sega holds them too, so
	// they are new exposures by Sega) among others.
	var breach bytes.Buffer
	want := map[string]struct{}{}
	for i := range rows - overlap {
		fmt.Fprintf(&breach, "other%d@sega.example\n", i)
	}
	for i := range overlap {
		e := fmt.Sprintf("w%d@watch.example", i*(watched/overlap))
		fmt.Fprintln(&breach, e)
		d, _ := canon.Digest(e)
		want[hex.EncodeToString(d[:])+" Sega"] = struct{}{}
	}
	segaFile, segaManifest := filepath.Join(dir, "sega.txt"), filepath.Join(dir, "sega.json")
	os.WriteFile(segaFile, breach.Bytes(), 0o600)
	os.WriteFile(segaManifest, []byte(`{"Name":"Sega","Title":"Sega Pass","BreachDate":"2011-06-17"}`), 0o600)
	runOK(t, "import", "--addr", admin, "--manifest", segaManifest, segaFile)

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(120 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("1,000 added", func() bool { return recv.count(breachd.EventExposureAdded) >= overlap })
	time.Sleep(300 * time.Millisecond) // nothing more comes
	recv.mu.Lock()
	if !mapsEqual(recv.got[breachd.EventExposureAdded], want) || len(recv.bad) > 0 {
		t.Fatalf("added: %d accounts (want exactly the %d watched in Sega); refused: %v", len(recv.got[breachd.EventExposureAdded]), overlap, recv.bad)
	}
	recv.mu.Unlock()

	// Pull: the same events through breachctl, in pages.
	out := ctl("watch", "events", "users", "--cursor-file", filepath.Join(dir, "cursor"))
	var pulled int
	for line := range strings.Lines(out) {
		var ev breachd.Event
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Type == breachd.EventExposureAdded {
			pulled += len(ev.Data.Accounts)
		}
	}
	if pulled != overlap {
		t.Fatalf("watch events printed %d accounts:\n%.500s", pulled, out)
	}

	// The receiver goes down; the breach is deleted; the daemon is killed
	// while the removed events wait, then restarted; the receiver comes
	// back after downFor.
	recv.setDown(true)
	runOK(t, "breach", "delete", "--addr", admin, "Sega")
	waitFor("a refused delivery", func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		return recv.posts > len(recv.bodies)
	})
	daemon.Process.Signal(syscall.SIGKILL)
	daemon.Wait()
	start() // stopped with SIGTERM when the test ends
	time.Sleep(downFor)
	recv.setDown(false)
	waitFor("1,000 removed", func() bool { return recv.count(breachd.EventExposureRemoved) >= overlap })
	time.Sleep(300 * time.Millisecond)
	recv.mu.Lock()
	if !mapsEqual(recv.got[breachd.EventExposureRemoved], want) || len(recv.bad) > 0 || len(recv.got[breachd.EventExposureAdded]) != overlap {
		t.Fatalf("removed: %d accounts; added %d; refused: %v", len(recv.got[breachd.EventExposureRemoved]), len(recv.got[breachd.EventExposureAdded]), recv.bad)
	}
	recv.mu.Unlock()
	if out := ctl("watch", "deliveries"); !strings.Contains(out, "0 pending, 0 dead letters") {
		t.Fatalf("deliveries: %s", out)
	}
	if out := ctl("watch", "list"); !strings.Contains(out, fmt.Sprintf("users  %d", watched)) {
		t.Fatalf("watch list: %s", out)
	}
	// The restarted daemon's metrics, scraped: the removed event
	// delivered, nothing waiting (the gauges follow the sender's next
	// read of the outbox).
	endpoint := fmt.Sprintf(`endpoint="http://%s/hook"`, ln.Addr())
	wantMetrics := []string{
		`breachd_watch_deliveries_total{` + endpoint + `,outcome="delivered"} 1`,
		`breachd_watch_delivery_backlog{` + endpoint + `} 0`,
		`breachd_watch_delivery_lag_seconds{` + endpoint + `} 0`,
	}
	waitFor("the delivery metrics", func() bool {
		resp, err := http.Get("http://127.0.0.1:" + metrics + "/metrics")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range wantMetrics {
			if !strings.Contains(string(body), want) {
				return false
			}
		}
		return true
	})
}

func mapsEqual(a, b map[string]struct{}) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}
