package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/daemon/daemontest"
	"github.com/breachd/breachd/store"
)

// TestRun drives a real in-process daemon holding the accounts of a small
// dump, and checks that every section is reported.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	srv := daemontest.Start(t, filepath.Join(dir, "data"), nil, nil)
	var dump bytes.Buffer
	var ds []breachd.Digest
	for i := range 500 {
		email := fmt.Sprintf("user%d@example.com", i)
		fmt.Fprintln(&dump, email)
		d, err := canon.Digest(email)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	dumpFile := filepath.Join(dir, "dump.txt")
	if err := os.WriteFile(dumpFile, dump.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := daemontest.Import(ctx, srv, breachd.Breach{Name: "Test", Title: "Test", BreachDate: "2011-06-17"}, ds); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	args := []string{"--addr", srv.Addr(), "--corpus", dumpFile, "--absent", "0.5",
		"--duration", "100ms", "--rounds", "1", "--concurrency", "1,4", "--batch", "100"}
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("run = %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"500 present digests", "| 1 |", "| 4 |", "50% of peak", "80% of peak", "| 2 | 100 | 8 |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, args := range [][]string{
		{},                             // neither --addr nor --data
		{"--addr", "x", "--data", "y"}, // both
		{"--addr", "x", "--concurrency", "0"},
		{"--addr", "x", "--batch", "10001"},
		{"--addr", "x", "--absent", "2"},
	} {
		if _, err := parse(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parse(%q) accepted", args)
		}
	}
}

func TestPercentiles(t *testing.T) {
	r := result{calls: 1000}
	for i := range 1000 {
		r.lat = append(r.lat, 1+time.Duration(i))
	}
	if r.pct(0.5) != 501 || r.pct(0.99) != 991 || r.pct(0.999) != 1000 {
		t.Fatalf("p50, p99, p999 = %d, %d, %d", r.pct(0.5), r.pct(0.99), r.pct(0.999))
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Fatalf("median = %v, want 2.5", m)
	}
}

// TestSoak runs a short soak against a real breachd process built for the
// test: Checks under load while breaches are imported and deleted, then
// SIGTERM under load. It fails if any call fails, any answer is wrong, or a
// call in flight at SIGTERM fails.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a daemon")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "breachd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/breachd/breachd/cmd/breachd").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var dump bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&dump, "user%d@example.com\n", i)
	}
	dumpFile, manifest, data := filepath.Join(dir, "dump.txt"), filepath.Join(dir, "m.json"), filepath.Join(dir, "data")
	os.WriteFile(dumpFile, dump.Bytes(), 0o644)
	os.WriteFile(manifest, []byte(`{"Name":"Test","Title":"Test","BreachDate":"2011-06-17"}`), 0o644)
	if out, err := exec.Command(bin, "import", "--data", data, "--manifest", manifest, dumpFile).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}

	var out, errOut bytes.Buffer
	args := []string{"--breachd", bin, "--data", data, "--corpus", dumpFile, "--absent", "0.5",
		"--soak", "4s", "--soak-window", "2s", "--churn-accounts", "3000", "--churn-interval", "0"}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("soak = %v\n%s\n%s", err, out.String(), errOut.String())
	}
	t.Log(out.String())
	for _, want := range []string{"| 2s |", "| 4s |", ", errors 0;", "0 failures", "failed: 0.", "status 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !regexp.MustCompile(`churn: [1-9]\d* imports, [1-9]\d* deletes`).MatchString(out.String()) {
		t.Errorf("no breach was both imported and deleted during the soak")
	}
}

// TestAdminTarget reaches a daemon's admin socket through the target
// adminTarget gives for a relative data directory, as make soak passes
// it: unix://data/breachd.sock was read as authority "data", and every
// import of the soak's churn was refused. Not parallel: it changes the
// working directory.
func TestAdminTarget(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.Mkdir("data", 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs("data")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", store.AdminSocket(abs))
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(ln)
	defer gs.Stop()
	target := adminTarget("data")
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health through %s: %v", target, err)
	}
}
