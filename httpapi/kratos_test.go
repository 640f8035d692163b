package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/policy"
	"github.com/breachd/breachd/service"
)

// TestKratosHook speaks Kratos v1.3's web-hook contract (response.parse:
// true): at registration an exposed account's identity comes back with
// metadata_admin.breachd beside what it had; a blocked login is
// interrupted with a message on the email trait; otherwise 204.
func TestKratosHook(t *testing.T) {
	t.Parallel()
	yes := true
	ps, err := policy.New(policy.Policy{Rules: []policy.Rule{
		{Name: "exposed", When: policy.Conditions{EmailExposed: &yes, Contexts: []breachd.AssessContext{breachd.ContextSignup}}, Decision: breachd.StepUp},
		{Name: "exposed-login", When: policy.Conditions{EmailExposed: &yes, Contexts: []breachd.AssessContext{breachd.ContextLogin}}, Decision: breachd.Block},
	}}, nil, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, false, false, service.WithPolicy(ps))
	post := func(flow, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", f.url+"/v1/hooks/kratos?flow="+flow, strings.NewReader(body))
		req.Header.Set("User-Agent", "Ory Kratos")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := post("registration", `{"email":"`+both+`","metadata_admin":{"crm_id":42}}`)
	meta, _ := out["identity"].(map[string]any)["metadata_admin"].(map[string]any)
	if code != 200 || meta == nil {
		t.Fatalf("registration of an exposed account: %d %v", code, out)
	}
	if meta["crm_id"] != float64(42) {
		t.Errorf("the identity's own admin metadata was lost: %v", meta)
	}
	v, _ := meta["breachd"].(map[string]any)
	if v["exposed"] != true || v["decision"] != "step_up" || len(v["breaches"].([]any)) != 2 || v["checked_at"] == "" {
		t.Errorf("metadata_admin.breachd = %v", v)
	}
	if b, _ := json.Marshal(out); bytes.Contains(b, []byte(both)) {
		t.Errorf("the answer quotes the address: %s", b)
	}
	code, out = post("registration", `{"email":"`+nobody+`"}`)
	if v := out["identity"].(map[string]any)["metadata_admin"].(map[string]any)["breachd"].(map[string]any); code != 200 || v["exposed"] != false || v["decision"] != "allow" {
		t.Errorf("registration of a clean account: %d %v", code, out)
	}

	code, out = post("login", `{"email":"`+adobeOnly+`"}`)
	msgs, _ := out["messages"].([]any)
	if code < 400 || len(msgs) != 1 || msgs[0].(map[string]any)["instance_ptr"] != "#/traits/email" {
		t.Fatalf("a blocked login: %d %v; want a 4xx with a message on #/traits/email", code, out)
	}
	m := msgs[0].(map[string]any)["messages"].([]any)[0].(map[string]any)
	if m["type"] != "error" || m["text"] == "" || m["id"] == nil {
		t.Errorf("the interrupting message: %v", m)
	}
	if code, _ := post("login", `{"email":"`+nobody+`"}`); code != http.StatusNoContent {
		t.Errorf("a clean login: %d, want 204", code)
	}
	if code, _ := post("settings", `{"email":"`+nobody+`"}`); code != http.StatusBadRequest {
		t.Errorf("an unknown flow: %d, want 400", code)
	}
}

// TestJSONBodiesWhole: a JSON route reads its whole body: a second object
// or stray bytes after the first is refused (400), never ignored. Before,
// the Kratos hook and /v1/assess answered for the first address of
// {"email":A}{"email":B} and dropped the rest. (/v1/private/check reads
// through the same decodeBody; this fixture serves no private lookups.)
func TestJSONBodiesWhole(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false, false)
	for _, tt := range []struct{ path, body string }{
		{"/v1/hooks/kratos?flow=login", `{"email":"` + nobody + `"}{"email":"` + adobeOnly + `"}`},
		{"/v1/hooks/kratos?flow=login", `{"email":"` + nobody + `"} x`},
		{"/v1/assess", `{"email":"` + nobody + `","context":"login"}{"email":"` + adobeOnly + `","context":"login"}`},
	} {
		req, _ := http.NewRequest("POST", f.url+tt.path, strings.NewReader(tt.body))
		req.Header.Set("User-Agent", "breachd-test")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST %s with more after its JSON: %d %s, want 400", tt.path, resp.StatusCode, b)
		}
	}
}
