package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/synth"
)

// corpusFiles writes a synthetic dump, its manifest and its ground truth.
type corpusFiles struct {
	dump, manifest string
	accounts       []string // canonical emails that must be found
	stats          synth.Stats
}

func writeCorpus(t *testing.T, dir, name string, opts synth.Options) corpusFiles {
	t.Helper()
	var dump, acc bytes.Buffer
	opts.Accounts = &acc
	st, err := synth.Generate(&dump, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := corpusFiles{dump: filepath.Join(dir, name+".csv"), manifest: filepath.Join(dir, name+".json"), stats: st}
	c.accounts = strings.Fields(acc.String())
	if err := os.WriteFile(c.dump, dump.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	m := fmt.Sprintf(`{"Name":%q,"Title":"%s title","BreachDate":"2011-06-17","DataClasses":["Email addresses","Passwords"],"PwnCount":%d}`, name, name, st.Rows)
	if err := os.WriteFile(c.manifest, []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("breachd %s = %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// serving is a running `breachd serve`.
type serving struct {
	addr    string
	admin   string // unix:// target of the admin socket, if any
	metrics string // host:port of /metrics, when asked for
	http    string // base URL of the HTTP API, when asked for
	cancel  context.CancelFunc
	done    chan error
	log     lockedBuffer // its warnings and errors (--log-level warn)
}

// lockedBuffer is a bytes.Buffer written by the daemon and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startDaemon(t *testing.T, dir string, extra ...string) *serving {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	d := &serving{cancel: cancel, done: make(chan error, 1)}
	args := append([]string{"serve", "--data", dir, "--addr", "127.0.0.1:0", "--log-level", "warn"}, extra...)
	go func() {
		err := run(ctx, args, pw, &d.log)
		pw.Close()
		d.done <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("daemon did not start: %v (serve returned %v)", err, <-d.done)
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`on (127\.0\.0\.1:\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in %q", line)
	}
	d.addr = m[1]
	if m := regexp.MustCompile(`admin on (unix://[^,\s]+)`).FindStringSubmatch(line); m != nil {
		d.admin = m[1]
	}
	if m := regexp.MustCompile(`metrics on https?://([^/ ]+)/metrics`).FindStringSubmatch(line); m != nil {
		d.metrics = m[1]
	}
	if m := regexp.MustCompile(`HTTP API on (https?://127\.0\.0\.1:\d+)`).FindStringSubmatch(line); m != nil {
		d.http = m[1]
	}
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop shuts the daemon down as SIGINT would and checks it stopped cleanly.
func (d *serving) stop(t *testing.T) {
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("daemon stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("daemon did not stop within 30s")
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// checkAll streams the digests of emails and returns, per email, the breach
// names it was found in, and the corpus version.
func checkAll(t *testing.T, conn *grpc.ClientConn, emails []string) ([][]string, uint64) {
	t.Helper()
	stream, err := breachdv1.NewExposureServiceClient(conn).CheckStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]string, len(emails))
	var version uint64
	for start := 0; start < len(emails); start += 5000 {
		end := min(start+5000, len(emails))
		var packed []byte
		for _, e := range emails[start:end] {
			d := sha256.Sum256([]byte(e)) // ground truth is already canonical
			packed = append(packed, d[:]...)
		}
		if err := stream.Send(&breachdv1.CheckStreamRequest{EmailSha256: packed}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for j, i := range resp.GetExposedIndex() {
			out[start+int(i)] = resp.GetBreachSets()[resp.GetBreachSet()[j]].GetNames()
		}
		version = resp.GetCorpusVersion()
	}
	stream.CloseSend()
	return out, version
}

func wantAll(t *testing.T, conn *grpc.ClientConn, what string, emails []string, want ...string) {
	t.Helper()
	got, _ := checkAll(t, conn, emails)
	for i, g := range got {
		if !slices.Equal(g, want) {
			t.Fatalf("%s: %s found in %v, want %v", what, emails[i], g, want)
		}
	}
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	sega := writeCorpus(t, tmp, "SegaPass", synth.Options{Seed: 1, Records: 6000})
	other := writeCorpus(t, tmp, "Other", synth.Options{Seed: 2, Records: 3000, Domain: "other.example"})
	outsiders := writeCorpus(t, tmp, "Outsiders", synth.Options{Seed: 3, Records: 2000, Domain: "never.example"}).accounts

	// Offline import reports what it read and rejected.
	out := runOK(t, "import", "--data", data, "--manifest", sega.manifest, "--batch", "1000", sega.dump)
	for _, want := range []string{
		fmt.Sprintf("rows read  %d", sega.stats.Rows),
		fmt.Sprintf("rejected  %d", sega.stats.Malformed),
		fmt.Sprintf("new accounts  %d", len(sega.accounts)),
		"rejected line ",
	} {
		if !regexp.MustCompile(strings.ReplaceAll(want, "  ", `\s+`)).MatchString(out) {
			t.Errorf("import summary lacks %q:\n%s", want, out)
		}
	}

	d := startDaemon(t, data)
	conn := dial(t, d.addr)
	wantAll(t, conn, "after import", sega.accounts, "SegaPass")
	wantAll(t, conn, "outsiders", outsiders)

	// A direct import cannot touch a served corpus; it points to --addr.
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"import", "--data", data, "--manifest", other.manifest, other.dump}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--addr") {
		t.Fatalf("import --data into a served corpus = %v, want advice to use --addr", err)
	}

	// A second breach, imported through the daemon, shares some accounts.
	shared := sega.accounts[:100]
	f, err := os.OpenFile(other.dump, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range shared {
		fmt.Fprintf(f, "%s,Shared,2000-01-01,x\n", strings.ToUpper(e))
	}
	f.Close()
	runOK(t, "import", "--addr", d.admin, "--manifest", other.manifest, other.dump)
	wantAll(t, conn, "second breach", other.accounts, "Other")
	wantAll(t, conn, "shared", shared, "Other", "SegaPass")
	wantAll(t, conn, "first breach", sega.accounts[100:], "SegaPass")
	_, version := checkAll(t, conn, outsiders[:1])
	if version != 2 {
		t.Fatalf("corpus version = %d, want 2", version)
	}

	health, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || health.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", health, err)
	}
	d.stop(t)

	// After a restart everything is still there.
	d = startDaemon(t, data)
	conn = dial(t, d.addr)
	wantAll(t, conn, "after restart", sega.accounts[100:], "SegaPass")
	wantAll(t, conn, "after restart", other.accounts, "Other")
	wantAll(t, conn, "after restart", shared, "Other", "SegaPass")
	wantAll(t, conn, "after restart", outsiders)
	list, err := breachdv1.NewExposureServiceClient(conn).ListBreaches(t.Context(), &breachdv1.ListBreachesRequest{})
	if err != nil || len(list.GetBreaches()) != 2 {
		t.Fatalf("ListBreaches = %v, %v", list, err)
	}
}

// TestBreachCommands deletes and corrects breaches offline and through a
// daemon, and collects an interrupted import.
func TestBreachCommands(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	a := writeCorpus(t, tmp, "Alpha", synth.Options{Seed: 1, Records: 1500})
	b := writeCorpus(t, tmp, "Beta", synth.Options{Seed: 2, Records: 1000, Domain: "beta.example"})
	runOK(t, "import", "--data", data, "--manifest", a.manifest, a.dump)
	runOK(t, "import", "--data", data, "--manifest", b.manifest, b.dump)
	// An import interrupted by its source (a dump cut short by a bad gzip
	// stream) leaves rows that gc collects.
	cut := filepath.Join(tmp, "cut.csv.gz")
	if err := os.WriteFile(cut, []byte("\x1f\x8b\x08\x00garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(t.Context(), []string{"import", "--data", data, "--manifest", a.manifest, cut}, io.Discard, io.Discard); err == nil {
		t.Fatal("import of a broken gzip = nil")
	}
	if out := runOK(t, "gc", "--data", data); !strings.Contains(out, "collected") {
		t.Fatalf("gc printed %q", out)
	}

	if out := runOK(t, "breach", "delete", "--data", data, "Beta"); !regexp.MustCompile(`deleted Beta: \d+ accounts in no other breach removed; corpus version 3`).MatchString(out) {
		t.Fatalf("breach delete printed %q", out)
	}
	// Password releases, --kind: three downloads, the oldest deleted here,
	// the next through the daemon.
	for i, lines := range []string{"AAAA:1\nBBBB:2\nCCCC:3\n", "BBBB:4\nDDDD:5\n", "DDDD:6\nEEEE:7\n"} {
		name := fmt.Sprintf("PP-%d", i+1)
		rel, file := filepath.Join(tmp, name+".json"), filepath.Join(tmp, name+".txt")
		var text strings.Builder
		for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
			h, n, _ := strings.Cut(l, ":")
			fmt.Fprintf(&text, "%s:%s\n", strings.Repeat(h, 10), n) // 40 hex digits
		}
		if err := os.WriteFile(rel, []byte(`{"Name":"`+name+`","Title":"`+name+`","BreachDate":"2026-12-01"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(text.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		runOK(t, "import", "--kind", "sha1", "--data", data, "--manifest", rel, file)
	}
	if out := runOK(t, "breach", "list", "--kind", "sha1", "--data", data); out != "PP-1\t3\t2026-12-01\nPP-2\t2\t2026-12-01\nPP-3\t2\t2026-12-01\n" {
		t.Fatalf("breach list --kind sha1 printed %q", out)
	}
	if out := runOK(t, "breach", "delete", "--kind", "sha1", "--data", data, "PP-1"); out != "deleted sha1 release PP-1: 2 hashes in no other release removed; corpus version 4\n" {
		t.Fatalf("breach delete --kind sha1 printed %q", out)
	}
	if out := runOK(t, "breach", "list", "--data", data); strings.Contains(out, "PP-") {
		t.Fatalf("breach list (accounts) printed password releases: %q", out)
	}
	d := startDaemon(t, data)
	if out := runOK(t, "breach", "delete", "--kind", "sha1", "--addr", d.admin, "PP-2"); out != "deleted sha1 release PP-2: 1 hashes in no other release removed; corpus version 5\n" {
		t.Fatalf("breach delete --kind sha1 through the daemon printed %q", out)
	}
	fixedRel := filepath.Join(tmp, "pp-3-fixed.json")
	if err := os.WriteFile(fixedRel, []byte(`{"Name":"PP-3","Title":"PP-3 (corrected)","BreachDate":"2026-12-02"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := runOK(t, "breach", "update", "--kind", "sha1", "--addr", d.admin, "--manifest", fixedRel); out != "updated sha1 release PP-3; corpus version 6\n" {
		t.Fatalf("breach update --kind sha1 printed %q", out)
	}
	if out := runOK(t, "breach", "list", "--kind", "sha1", "--addr", d.admin); out != "PP-3\t2\t2026-12-02\n" {
		t.Fatalf("breach list --kind sha1 through the daemon printed %q", out)
	}
	err := run(t.Context(), []string{"breach", "delete", "--kind", "sha1", "--addr", d.admin, "PP-1"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `the sha1 password corpus has no release "PP-1"`) {
		t.Fatalf("deleting a release twice = %v", err)
	}
	conn := dial(t, d.addr)
	wantAll(t, conn, "after the delete", b.accounts)
	wantAll(t, conn, "the other breach", a.accounts, "Alpha")
	fixed := filepath.Join(tmp, "alpha-fixed.json")
	if err := os.WriteFile(fixed, []byte(`{"Name":"Alpha","Title":"Alpha (corrected)","BreachDate":"2011-06-17"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := runOK(t, "breach", "update", "--addr", d.admin, "--manifest", fixed); !strings.Contains(out, "updated Alpha; corpus version 4") {
		t.Fatalf("breach update printed %q", out)
	}
	got, err := breachdv1.NewExposureServiceClient(conn).GetBreach(t.Context(), &breachdv1.GetBreachRequest{Name: "Alpha"})
	if err != nil || got.GetBreach().GetTitle() != "Alpha (corrected)" || got.GetBreach().GetAccountCount() != int64(len(a.accounts)) {
		t.Fatalf("GetBreach after the update = %v, %v", got, err)
	}
	if out := runOK(t, "breach", "delete", "--addr", d.admin, "Alpha"); !strings.Contains(out, fmt.Sprintf("deleted Alpha: %d accounts", len(a.accounts))) {
		t.Fatalf("breach delete through the daemon printed %q", out)
	}
	wantAll(t, conn, "after deleting both", a.accounts)
	err = run(t.Context(), []string{"breach", "delete", "--addr", d.admin, "Alpha"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `unknown breach "Alpha"`) {
		t.Fatalf("deleting twice = %v", err)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	tests := [][]string{
		nil,
		{"bogus"},
		{"serve", "extra-argument"},
		{"keys"},
		{"breach"},
		{"breach", "delete", "--data", "x"}, // no name
		{"breach", "update", "--data", "x", "--addr", "y"},    // both targets
		{"breach", "update", "--kind", "sha1", "--data", "x"}, // no manifest
		{"breach", "delete", "--kind", "sha1", "--data", "x"}, // no name
		{"gc"},
		{"keys", "create", "--data", "x"}, // no name or scopes
		{"config"},
		{"import", "--data", "x", "dump"}, // no manifest
		{"import", "--data", "x", "--addr", "y", "--manifest", "m", "d"}, // both targets
		{"import", "--data", "x", "--manifest", "m", "--format", "xml", "d"},
		{"import", "--data", "x", "--manifest", "m", "--count-passwords", "d"},               // a combolist without --kind pairs
		{"import", "--data", "x", "--manifest", "m", "--password-column", "pw", "d"},         // the same
		{"import", "--kind", "sha1", "--data", "x", "--manifest", "m", "--column", "e", "d"}, // no CSV column in hashes
		{"import", "--data", "x", "--api-key-file", "k", "--manifest", "m", "d"},             // nothing dialled
		{"import", "--addr", "unix:///x.sock", "--index-key", "k", "--manifest", "m", "d"},   // the daemon reads its own
		{"breach", "list", "--data", "x", "--ca", "ca.pem"},
		{"breach", "delete", "--addr", "unix:///x.sock", "--index-key", "k", "Alpha"},
	}
	for _, args := range tests {
		err := run(t.Context(), args, io.Discard, io.Discard)
		if err != errUsage {
			t.Errorf("run(%q) = %v, want errUsage", args, err)
		}
	}
}

func TestInvalidOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--data", t.TempDir(), "--fpr", "5"}, "invalid fpr = 5 (--fpr, BREACHD_FPR, key fpr in --config): want a rate between 0 and 1"},
		{[]string{"serve", "--data", t.TempDir(), "--fpr", "0"}, "invalid fpr = 0"},
		{[]string{"serve", "--data", t.TempDir(), "--fpr", "x"}, `invalid --fpr: "x" is not a number`},
		{[]string{"serve", "--data", t.TempDir(), "--shutdown-timeout", "0s"}, "invalid shutdown_timeout = 0s (--shutdown-timeout"},
		{[]string{"serve"}, "invalid data"},
		{[]string{"serve", "--data", t.TempDir(), "--addr", "0.0.0.0:0"}, "refusing to listen on 0.0.0.0:0 without TLS and authentication"},
		{[]string{"serve", "--data", t.TempDir(), "--tls-cert", "c.pem"}, "invalid tls.key"},
	} {
		err := run(t.Context(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"import", "--data", "d", "--manifest", "m", "--batch", "10001", "x"}, io.Discard, &stderr); err != errUsage ||
		!strings.Contains(stderr.String(), "invalid --batch 10001: want 1 to 10000") {
		t.Errorf("import --batch 10001 = %v, %q; want a usage error naming --batch", err, stderr.String())
	}
	stderr.Reset()
	if err := run(t.Context(), []string{"import", "--data", "d", "--manifest", "m", "--max-invalid", "2", "x"}, io.Discard, &stderr); err != errUsage ||
		!strings.Contains(stderr.String(), "invalid --max-invalid 2: want a share from 0 to 1") {
		t.Errorf("import --max-invalid 2 = %v, %q; want a usage error naming --max-invalid", err, stderr.String())
	}
}

// TestConfigSources checks the precedence of the configuration's sources
// (flag over environment over file over default), that every key of the
// file is known, and that errors name the key.
func TestConfigSources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "breachd.yaml")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("data: /from/file\naddr: 127.0.0.1:1\nfpr: 0.01\nquota:\n  rate: 5\n  burst: 50\n")
	env := map[string]string{"BREACHD_ADDR": "127.0.0.1:2", "BREACHD_QUOTA_BURST": "70", "BREACHD_IMPORT_IDLE_TIMEOUT": "30s"}
	c, err := loadConfig("t", []string{"--config", file, "--fpr", "0.02"}, io.Discard, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Data != "/from/file" || c.Addr != "127.0.0.1:2" || c.FPR != 0.02 || c.Quota.Rate != 5 || c.Quota.Burst != 70 ||
		c.Import.IdleTimeout != duration(30*time.Second) || c.Quota.MaxStreams != defaultConfig().Quota.MaxStreams {
		t.Fatalf("config = %+v", c)
	}
	write("data: x\nquota:\n  rat: 5\n")
	if _, err := loadConfig("t", []string{"--config", file}, io.Discard, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "field rat not found") {
		t.Fatalf("misspelt key: %v, want an error naming it", err)
	}
	write("data: x\n---\nquota:\n  rate: 5\n")
	if _, err := loadConfig("t", []string{"--config", file}, io.Discard, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "more than one YAML document") {
		t.Fatalf("a second document: %v, want an error saying only one is read", err)
	}
	write("# only a comment\n")
	if _, err := loadConfig("t", []string{"--config", file}, io.Discard, func(string) string { return "" }); err != nil {
		t.Fatalf("a file of comments: %v", err)
	}
	env = map[string]string{"BREACHD_QUOTA_RATE": "fast"}
	if _, err := loadConfig("t", nil, io.Discard, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "invalid quota.rate (BREACHD_QUOTA_RATE)") {
		t.Fatalf("bad env value: %v", err)
	}
	write("data: x\nquota:\n  rate: -1\n")
	c, err = loadConfig("t", []string{"--config", file}, io.Discard, func(string) string { return "" })
	if err == nil {
		err = c.validate()
	}
	if err == nil || !strings.Contains(err.Error(), "invalid quota.rate = -1 (BREACHD_QUOTA_RATE, key quota.rate in --config)") {
		t.Fatalf("invalid quota.rate: %v", err)
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"config", "print", "--data", dir, "--fpr", "0.005"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"data: " + dir, "fpr: 0.005", "shutdown_timeout: 10s", "max_stream_wait: 5s", "client_auth: require"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("config print lacks %q:\n%s", want, out.String())
		}
	}
	// A YAML typo names the key and line, not Go types; config print
	// validates even without a data directory.
	typo := filepath.Join(t.TempDir(), "typo.yaml")
	os.WriteFile(typo, []byte("quota:\n  rat: 5\n"), 0o600)
	if _, err := loadConfig("t", []string{"--config", typo}, io.Discard, func(string) string { return "" }); err == nil ||
		strings.Contains(err.Error(), "in type") || !strings.Contains(err.Error(), "line 2: field rat not found") {
		t.Errorf("a YAML typo: %v; want its line and key, no Go type", err)
	}
	bogus := filepath.Join(t.TempDir(), "bogus.yaml")
	os.WriteFile(bogus, []byte("tls:\n  client_auth: bogus\n"), 0o600)
	if err := run(t.Context(), []string{"config", "print", "--config", bogus}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "tls.client_auth") {
		t.Errorf("config print with client_auth: bogus: %v, want it refused", err)
	}
	// A policy that does not parse fails with the line and the field.
	for _, tt := range []struct{ yaml, want string }{
		{"policy:\n  rules:\n    - name: a\n      whenn: {pair_exposed: true}\n", "line 4: field whenn not found"},
		{"policy:\n  rules:\n    - name: a\n      decision: blok\n", `line 4: decision "blok"`},
		{"policy:\n  mode: report\n", `line 2: mode "report"`},
		{"policy:\n  rules:\n    - name: a\n      when: {contexts: [logout]}\n      decision: warn\n", `line 4: context "logout"`},
		{"policy:\n  rules:\n    - decision: warn\n", "policy.rules[0].name is empty"},
		{"policy:\n  principals:\n    - principal: sso\n      rules: [{name: a, decision: warn}, {name: a, decision: block}]\n", "policy.principals[0].rules[1].name"},
	} {
		f := filepath.Join(t.TempDir(), "policy.yaml")
		os.WriteFile(f, []byte(tt.yaml), 0o600)
		if err := run(t.Context(), []string{"config", "print", "--config", f}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("a policy of %q: %v; want %q", tt.yaml, err, tt.want)
		}
	}
	// A misspelt variable is an error, as a misspelt YAML key is.
	if err := checkEnv([]string{"PATH=/bin", "BREACHD_QUOTA_RATE=5", "BREACHD_NATS_TOKEN=x", "BREACHD_QUOTA_RAT=5"}); err == nil || !strings.Contains(err.Error(), "BREACHD_QUOTA_RAT:") {
		t.Errorf("checkEnv with BREACHD_QUOTA_RAT: %v, want it named as unknown", err)
	}
	if err := checkEnv([]string{"BREACHD_LIMITS_MAX_CONNECTIONS_PER_ADDRESS=9", "BREACHD_CONFIG=x"}); err != nil {
		t.Errorf("checkEnv with known variables: %v", err)
	}
}

// TestKeysCommands creates, lists and revokes keys, and checks that only a
// hash of each key is stored.
func TestKeysCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := runOK(t, "keys", "create", "--data", dir, "--name", "signup", "--scopes", "check", "--rate", "10", "--burst", "20")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	key := lines[len(lines)-1]
	if !strings.HasPrefix(key, "bdk_") || len(key) < 40 {
		t.Fatalf("the last line of keys create is %q, want the key", key)
	}
	stored, err := os.ReadFile(filepath.Join(dir, "keys.json"))
	if err != nil || strings.Contains(string(stored), key) || strings.Contains(string(stored), key[4:]) {
		t.Fatalf("keys.json holds the key itself (or cannot be read: %v)", err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "keys.json")); st.Mode().Perm() != 0o600 {
		t.Errorf("keys.json mode = %v, want 0600", st.Mode().Perm())
	}
	// --out writes the key to a new 0600 file, prints no key, and never
	// overwrites a file.
	keyFile := filepath.Join(t.TempDir(), "sweeper.key")
	out = runOK(t, "keys", "create", "--data", dir, "--name", "sweeper", "--scopes", "check,bulk", "--out", keyFile)
	written, err := os.ReadFile(keyFile)
	if err != nil || !strings.HasPrefix(string(written), "bdk_") || strings.Contains(out, strings.TrimSpace(string(written))) {
		t.Fatalf("keys create --out: printed %q, wrote %q (%v)", out, written, err)
	}
	if st, _ := os.Stat(keyFile); st.Mode().Perm() != 0o600 {
		t.Errorf("the --out key file's mode = %v, want 0600", st.Mode().Perm())
	}
	if err := run(t.Context(), []string{"keys", "create", "--data", dir, "--name", "other", "--scopes", "check", "--out", keyFile}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Fatalf("keys create --out onto an existing file: %v", err)
	}
	if list := runOK(t, "keys", "list", "--data", dir); strings.Contains(list, "other") {
		t.Fatalf("a key was created although its --out file could not be:\n%s", list)
	}
	// Printed to a full disk ('> key.txt'): the run fails, saying the key
	// exists and how to revoke it, rather than exit 0 with nobody holding it.
	if full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0); err == nil {
		err := run(t.Context(), []string{"keys", "create", "--data", dir, "--name", "lost", "--scopes", "check"}, full, io.Discard)
		full.Close()
		if err == nil || !strings.Contains(err.Error(), "keys revoke --name lost") {
			t.Fatalf("keys create printing to a full disk: %v, want the write's error and how to revoke the key", err)
		}
	}
	if err := run(t.Context(), []string{"keys", "create", "--data", dir, "--name", "signup", "--scopes", "check"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("a second key named signup: %v", err)
	}
	if err := run(t.Context(), []string{"keys", "create", "--data", dir, "--name", "x", "--scopes", "check,root"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), `unknown scope "root"`) {
		t.Fatalf("unknown scope: %v", err)
	}
	list := runOK(t, "keys", "list", "--data", dir)
	if !regexp.MustCompile(`signup\s+check\s+10\s+20`).MatchString(list) || !regexp.MustCompile(`sweeper\s+check,bulk\s+default\s+default`).MatchString(list) {
		t.Fatalf("keys list:\n%s", list)
	}
	runOK(t, "keys", "revoke", "--data", dir, "--name", "signup")
	if list := runOK(t, "keys", "list", "--data", dir); strings.Contains(list, "signup") {
		t.Fatalf("revoked key still listed:\n%s", list)
	}
	if err := run(t.Context(), []string{"keys", "revoke", "--data", dir, "--name", "signup"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "no key named") {
		t.Fatalf("revoking twice: %v", err)
	}
}

// TestImportNothingAccepted covers dumps misread or with no usable row: the
// import fails with a message that says why, and commits nothing, offline
// and through a daemon. (A CSV whose header lacks the email column, such as
// id,name,mail, used to be read as one address a line and commit whole
// rows as accounts.)
func TestImportNothingAccepted(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	c := writeCorpus(t, tmp, "A", synth.Options{Seed: 1, Records: 10})
	files := map[string]struct {
		content string
		flags   []string
		want    func(p string) string
	}{
		"garbage.bin": {content: "\x00\x01\x02\xff\xfe binary \x00 garbage\n\x13\x37\n", want: noRows},
		"empty.csv":   {content: "", want: noRows},
		"nocol.csv":   {content: "mail,name\na@example.com,A\nb@example.com,B\n", want: func(string) string { return "pass --column mail" }},
		"idnamemail.csv": {content: "id,name,mail\n1,Ann,ann@example.com\n2,Bob,bob@example.com\n",
			want: func(string) string {
				return `no column named "email"; its columns are "id", "name", "mail": pass --column mail`
			}},
		"rows.txt": {content: "1,ann@example.com\n2,bob@example.com\n", want: noRows},
		"dirty.txt": {content: "ann@example.com\nx\ny\n",
			want: func(p string) string { return p + ": 2 of 3 rows (66.7%) were rejected, more than --max-invalid 0.5" }},
		"onebad.txt": {content: "ann@example.com\nx\nbob@example.com\n", flags: []string{"--fail-on-invalid"},
			want: func(p string) string { return p + ": 1 of 3 rows were rejected (--fail-on-invalid)" }},
	}
	data := filepath.Join(tmp, "data")
	runOK(t, "import", "--data", data, "--manifest", c.manifest, c.dump)
	d := startDaemon(t, data)
	for name, f := range files {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(f.content), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, target := range [][]string{{"--data", filepath.Join(tmp, "fresh-"+name)}, {"--addr", d.admin}} {
			args := append(append(append([]string{"import"}, target...), f.flags...), "--manifest", c.manifest, p)
			err := run(t.Context(), args, io.Discard, io.Discard)
			if want := f.want(p); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s into %s: run = %v, want an error saying %q", name, target[0], err, want)
			}
		}
	}
	conn := dial(t, d.addr)
	list, err := breachdv1.NewExposureServiceClient(conn).ListBreaches(t.Context(), &breachdv1.ListBreachesRequest{})
	if err != nil || list.GetCorpusVersion() != 1 {
		t.Fatalf("after the refused imports ListBreaches = %v, %v; want version 1", list, err)
	}
	d.stop(t)
	for name := range files {
		st, err := store.Open(t.Context(), store.EmailDir(filepath.Join(tmp, "fresh-"+name)), store.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		if v := st.Version(); v != 0 {
			t.Errorf("%s: the refused offline import left corpus version %d, want 0", name, v)
		}
		st.Close()
	}
}

func noRows(p string) string { return "no row of " + p + " was accepted" }

func TestImportErrors(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	c := writeCorpus(t, tmp, "A", synth.Options{Seed: 1, Records: 10})
	bad := filepath.Join(tmp, "bad.json")
	os.WriteFile(bad, []byte(`{"Name":"has space","Title":"x"}`), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing dump", []string{"import", "--data", filepath.Join(tmp, "d"), "--manifest", c.manifest, filepath.Join(tmp, "nope.csv")}, "no such file"},
		{"invalid manifest", []string{"import", "--data", filepath.Join(tmp, "d"), "--manifest", bad, c.dump}, "invalid breach"},
		{"no email column", []string{"import", "--data", filepath.Join(tmp, "d"), "--manifest", c.manifest, "--format", "csv", "--column", "mail", c.dump}, `no column named "mail"`},
		{"no daemon", []string{"import", "--addr", "127.0.0.1:1", "--manifest", c.manifest, c.dump}, "daemon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(t.Context(), tt.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
