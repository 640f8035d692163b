package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/synth"
)

// TestAssessEndToEnd: a combolist with dirty lines imports exactly; 10,000
// assessments (exposed pairs, accounts of a breach whose passwords were
// never published, clean accounts; right and wrong passwords; signup and
// login) through the real daemon give, in report-only mode, allow with the
// decision and reasons enforcement would have given, which the metrics
// count; HTTP answers the same; and the data directory holds no password,
// no password SHA-1 and no address.
func TestAssessEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	sega := writeCorpus(t, dir, "SegaPass", synth.Options{Seed: 7, Records: 4000})
	os.WriteFile(sega.manifest, []byte(`{"Name":"SegaPass","Title":"Sega Pass","BreachDate":"2011-06-17","PasswordsPublished":false}`), 0o600)
	runOK(t, "import", "--data", data, "--manifest", sega.manifest, sega.dump)

	// The combolist: 1,000 accounts of Sega Pass and 2,000 others, each
	// with its password; every tenth uses a common one. Three dirty lines.
	password := func(i int) string {
		if i%10 == 0 {
			return "123456"
		}
		return fmt.Sprintf("pw-%d-%x", i, i*7919)
	}
	var combo []string
	combo = append(combo, sega.accounts[:1000]...)
	for i := range 2000 {
		combo = append(combo, fmt.Sprintf("user%d@combo.example", i))
	}
	var list bytes.Buffer
	for i, a := range combo {
		fmt.Fprintf(&list, "%s:%s\n", a, password(i))
		if i == 500 {
			list.WriteString("no separator here\n:nopass-account\nempty@combo.example:\n")
		}
	}
	listFile, comboManifest := filepath.Join(dir, "combo.txt"), filepath.Join(dir, "combo.json")
	os.WriteFile(listFile, list.Bytes(), 0o600)
	os.WriteFile(comboManifest, []byte(`{"Name":"Combo","Title":"A combolist","BreachDate":"2026-11-20"}`), 0o600)
	out := runOK(t, "import", "--kind", "pairs", "--data", data, "--manifest", comboManifest, listFile)
	for _, want := range []string{"accepted  3000", "rejected     3", "pairs  3000", "rejected line 502: no ':'", "rejected line 504: empty password"} {
		if !strings.Contains(strings.Join(strings.Fields(out), "  "), strings.Join(strings.Fields(want), "  ")) {
			t.Errorf("import summary lacks %q:\n%s", want, out)
		}
	}
	// Password counts: the common password is common.
	common := sha1.Sum([]byte("123456"))
	hashes := filepath.Join(dir, "hashes.txt")
	os.WriteFile(hashes, fmt.Appendf(nil, "%X:5000\n", common[:]), 0o600)
	pwManifest := filepath.Join(dir, "pw.json")
	os.WriteFile(pwManifest, []byte(`{"Name":"pwned-v1","Title":"Pwned Passwords"}`), 0o600)
	runOK(t, "import", "--kind", "sha1", "--data", data, "--manifest", pwManifest, hashes)

	cfg := filepath.Join(dir, "breachd.yaml")
	os.WriteFile(cfg, []byte(`policy:
  mode: report-only
  rules:
    - name: pair-exposed
      when: {pair_exposed: true}
      decision: reset
    - name: common-password
      when: {password_count_at_least: 100, contexts: [signup, password_change]}
      decision: block
    - name: password-unknown
      when: {password_unknown: true, contexts: [login]}
      decision: step_up
`), 0o600)
	d := startDaemon(t, data, "--config", cfg, "--metrics-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")

	// What enforcement must decide, from the ground truth alone.
	inSega := map[string]bool{}
	for _, a := range sega.accounts {
		inSega[a] = true
	}
	comboPw := map[string]string{}
	for i, a := range combo {
		comboPw[a] = password(i)
	}
	type tc struct {
		email, password string
		ctx             breachd.AssessContext
	}
	var cases []tc
	for i, a := range combo { // right passwords, then wrong ones
		cases = append(cases, tc{a, comboPw[a], breachd.AssessContext(1 + i%2)})
		cases = append(cases, tc{a, "wrong-" + comboPw[a], breachd.AssessContext(1 + i%2)})
	}
	for _, a := range sega.accounts[1000:] {
		cases = append(cases, tc{a, "123456", breachd.ContextLogin})
	}
	for i := len(cases); i < 10000; i++ {
		cases = append(cases, tc{fmt.Sprintf("clean%d@nowhere.example", i), "123456", breachd.AssessContext(1 + i%2)})
	}
	expect := func(c tc) (breachd.Decision, []string) {
		pairExposed := comboPw[c.email] != "" && comboPw[c.email] == c.password
		unknown := inSega[c.email] // Sega Pass never published its passwords
		var reasons []string
		decision := breachd.Allow
		if pairExposed {
			reasons, decision = append(reasons, "pair-exposed"), max(decision, breachd.Reset)
		}
		if c.password == "123456" && c.ctx == breachd.ContextSignup {
			reasons, decision = append(reasons, "common-password"), max(decision, breachd.Block)
		}
		if unknown && c.ctx == breachd.ContextLogin {
			reasons, decision = append(reasons, "password-unknown"), max(decision, breachd.StepUp)
		}
		return decision, reasons
	}

	conn, err := client.Dial(d.addr, client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := client.New(conn)
	wouldBe := map[breachd.Decision]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan tc)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				a, err := cl.Assess(t.Context(), c.email, c.password, c.ctx)
				if err != nil {
					t.Errorf("Assess: %v", err)
					continue
				}
				decision, reasons := expect(c)
				if a.Decision != breachd.Allow || a.Enforced || a.WouldBe != decision || !slices.Equal(a.Reasons, reasons) {
					t.Errorf("%s (%s): %s, would be %s %v; want allow, would be %s %v", c.email, c.ctx, a.Decision, a.WouldBe, a.Reasons, decision, reasons)
				}
				if (a.PasswordCount > 0) != (c.password == "123456") {
					t.Errorf("%s: password count %d", c.email, a.PasswordCount)
				}
				mu.Lock()
				wouldBe[decision]++
				mu.Unlock()
			}
		}()
	}
	for _, c := range cases {
		work <- c
	}
	close(work)
	wg.Wait()
	t.Logf("10,000 assessments; enforcement would have answered %v", wouldBe)
	for dec, n := range wouldBe {
		if v, _ := metricAt(t, d.metrics, "breachd_assess_decisions_total", map[string]string{"decision": dec.String(), "mode": "report-only"}); v != float64(n) {
			t.Errorf("breachd_assess_decisions_total{decision=%q} = %v, want %d", dec, v, n)
		}
	}

	// HTTP answers as gRPC does.
	for _, c := range cases[:300] {
		pw := sha1.Sum([]byte(c.password))
		body, _ := json.Marshal(map[string]string{"email": c.email, "password_sha1": hex.EncodeToString(pw[:]), "context": c.ctx.String()})
		req, _ := http.NewRequestWithContext(context.Background(), "POST", d.http+"/v1/assess", bytes.NewReader(body))
		req.Header.Set("User-Agent", "test")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Decision string `json:"decision"`
			WouldBe  string `json:"would_be"`
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if decision, _ := expect(c); err != nil || resp.StatusCode != 200 || got.Decision != "allow" || got.WouldBe != decision.String() {
			t.Fatalf("POST /v1/assess for %s: %d %+v (%v); want allow, would be %s", c.email, resp.StatusCode, got, err, decision)
		}
	}

	// A combolist through the running daemon (AdminService.ImportPairs on
	// its admin socket) is answered at once.
	live := filepath.Join(dir, "live.txt")
	os.WriteFile(live, []byte("late@combo.example:late password\nbroken\n"), 0o600)
	os.WriteFile(comboManifest, []byte(`{"Name":"Late","Title":"A later combolist"}`), 0o600)
	out = runOK(t, "import", "--kind", "pairs", "--count-passwords", "--addr", d.admin, "--manifest", comboManifest, live)
	if !strings.Contains(out, "imported Late") {
		t.Errorf("import through the daemon: %s", out)
	}
	for pw, want := range map[string]breachd.PasswordStatus{"late password": breachd.PasswordExposed, "other": breachd.PasswordNotExposed} {
		a, err := cl.Assess(t.Context(), "late@combo.example", pw, breachd.ContextLogin)
		if err != nil || len(a.Breaches) != 1 || a.Breaches[0].Password != want {
			t.Errorf("after an import through the daemon, with %q: %+v, %v; want Late %s", pw, a.Breaches, err, want)
		}
		// --count-passwords: the combolist's password is counted.
		if wantCount := uint64(map[bool]int{true: 1}[want == breachd.PasswordExposed]); err == nil && a.PasswordCount != wantCount {
			t.Errorf("with %q after --count-passwords: count %d, want %d", pw, a.PasswordCount, wantCount)
		}
	}

	// Nothing at rest gives away a password, its SHA-1 or an address.
	d.stop(t)
	// (The common password is in the password corpus by its own import.)
	var needles [][]byte
	for i, a := range combo[:200] {
		needles = append(needles, []byte(a))
		if password(i) == "123456" {
			continue
		}
		h := sha1.Sum([]byte(password(i)))
		needles = append(needles, []byte(password(i)), []byte(hex.EncodeToString(h[:])), []byte(strings.ToUpper(hex.EncodeToString(h[:]))))
		for j := 0; j+8 <= len(h); j += 4 {
			needles = append(needles, h[j:j+8])
		}
	}
	filepath.WalkDir(data, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Type()&fs.ModeSocket != 0 {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s holds %q (a password, its SHA-1 or an address)", p, n)
				return nil
			}
		}
		return nil
	})
}
