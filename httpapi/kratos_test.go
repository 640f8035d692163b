package httpapi_test

import (
	"bytes"
	"encoding/json"
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
