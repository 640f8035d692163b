#!/usr/bin/env bash
# make kratos-e2e: Ory Kratos v1.3.1, built from the Go module proxy, in
# front of a real breachd (TLS, an API key, a policy), running a
# registration and a login through Kratos's API flows:
#   - an address of an old breach registers; its identity carries
#     metadata_admin.breachd (exposed, decision step_up);
#   - a clean address registers with exposed: false;
#   - an address of a breach of the last 30 days is refused on the email
#     field with breachd's message (policy: block);
#   - a password breachd's Pwned Passwords corpus knows is refused by
#     Kratos's own haveibeenpwned check, pointed at breachd's /range;
#   - the registered accounts log in; the blocked-at-login one is refused.
# Needs: go, openssl, curl, python3. KRATOS_BIN=path skips the build.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/bench/out/kratos-e2e
rm -rf "$OUT" && mkdir -p "$OUT"
BIN=$ROOT/bin
go build -o "$BIN/" ./cmd/...

KRATOS=${KRATOS_BIN:-$ROOT/bench/out/kratos-v1.3.1}
if [ ! -x "$KRATOS" ]; then
	echo "building Ory Kratos v1.3.1 from the module proxy (a few minutes, once)"
	src=$(mktemp -d)
	( cd "$src" && GOFLAGS=-mod=mod go mod download -json github.com/ory/kratos@v1.3.1 >/dev/null )
	dir=$(go env GOMODCACHE)/github.com/ory/kratos@v1.3.1
	cp -r "$dir" "$src/kratos" && chmod -R u+w "$src/kratos"
	( cd "$src/kratos" && CGO_ENABLED=1 go build -tags sqlite,json1 -o "$KRATOS" . )
	rm -rf "$src"
fi

source bench/lib.sh # free_port
GRPC=$(free_port); HTTP=$(free_port); PUB=$(free_port); ADM=$(free_port)

# An evaluation CA and breachd's certificate; Kratos trusts the CA.
( cd "$OUT"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=e2e-ca -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout tls.key -out tls.csr 2>/dev/null
  printf 'subjectAltName = DNS:localhost, IP:127.0.0.1\nextendedKeyUsage = serverAuth\n' > ext
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out tls.crt 2>/dev/null )

# The corpus: an old breach, a recent one, and a Pwned Passwords release.
DATA=$OUT/data
printf 'email\nold.breach@example.com\n' > "$OUT/old.csv"
printf 'email\nnew.breach@example.com\n' > "$OUT/new.csv"
echo '{"Name":"OldBreach","Title":"An old breach","BreachDate":"2011-06-17","PasswordsPublished":false}' > "$OUT/old.json"
echo "{\"Name\":\"NewBreach\",\"Title\":\"A recent breach\",\"BreachDate\":\"$(date -u +%F)\"}" > "$OUT/new.json"
"$BIN/breachd" import --data "$DATA" --manifest "$OUT/old.json" "$OUT/old.csv" >/dev/null
"$BIN/breachd" import --data "$DATA" --manifest "$OUT/new.json" "$OUT/new.csv" >/dev/null
printf '%s:250000\n' "$(printf 'Password123!' | sha1sum | cut -c1-40 | tr a-f A-F)" > "$OUT/pwned.txt"
echo '{"Name":"pwned","Title":"Pwned Passwords"}' > "$OUT/pwned.json"
"$BIN/breachd" import --kind sha1 --data "$DATA" --manifest "$OUT/pwned.json" "$OUT/pwned.txt" >/dev/null
"$BIN/breachd" keys create --data "$DATA" --name kratos --scopes check --out "$OUT/kratos.key" >/dev/null
cat > "$OUT/breachd.yaml" <<YAML
http:
  addr: 127.0.0.1:$HTTP
  open_public: true
policy:
  mode: enforce
  rules:
    - name: breached-recently
      when: {breached_within: 720h}
      decision: block
    - name: exposed
      when: {email_exposed: true}
      decision: step_up
YAML
"$BIN/breachd" serve --data "$DATA" --addr 127.0.0.1:$GRPC --config "$OUT/breachd.yaml" \
	--tls-cert "$OUT/tls.crt" --tls-key "$OUT/tls.key" > "$OUT/breachd.log" 2>&1 &
BREACHD_PID=$!
trap 'kill $BREACHD_PID ${KRATOS_PID:-} 2>/dev/null || true' EXIT
for i in $(seq 100); do curl -sf --cacert "$OUT/ca.crt" -A e2e "https://localhost:$HTTP/range/00000" >/dev/null && break; sleep 0.1; done

cp deploy/kratos/breachd.jsonnet deploy/kratos/identity.schema.json "$OUT/"
sed -e "s|@KRATOS_PUBLIC_PORT@|$PUB|g; s|@KRATOS_ADMIN_PORT@|$ADM|g; s|@BREACHD_HTTP@|localhost:$HTTP|g" \
	-e "s|@DIR@|$OUT|g; s|@BREACHD_KEY@|$(cat "$OUT/kratos.key")|g" deploy/kratos/kratos.yml > "$OUT/kratos.yml"
chmod 600 "$OUT/kratos.yml"
SSL_CERT_FILE=$OUT/ca.crt "$KRATOS" serve --dev -c "$OUT/kratos.yml" > "$OUT/kratos.log" 2>&1 &
KRATOS_PID=$!
for i in $(seq 300); do curl -sf "http://127.0.0.1:$PUB/health/ready" >/dev/null && break; sleep 0.1; done

export PUB ADM
python3 - <<'PY'
import json, os, sys, urllib.request, urllib.error
pub, adm = "http://127.0.0.1:%s" % os.environ["PUB"], "http://127.0.0.1:%s" % os.environ["ADM"]
def call(method, url, body=None):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
def register(email, password):
    _, flow = call("GET", pub + "/self-service/registration/api")
    return call("POST", pub + "/self-service/registration?flow=" + flow["id"],
                {"method": "password", "traits": {"email": email}, "password": password})
def login(email, password):
    _, flow = call("GET", pub + "/self-service/login/api")
    return call("POST", pub + "/self-service/login?flow=" + flow["id"],
                {"method": "password", "identifier": email, "password": password})
def messages(body):
    out = []
    for n in body.get("ui", {}).get("nodes", []):
        out += [m["text"] for m in n.get("messages", [])]
    return out + [m["text"] for m in body.get("ui", {}).get("messages", [])]
failed = False
def check(ok, what, detail=""):
    global failed
    print(("ok    " if ok else "FAIL  ") + what + ("" if ok else ": " + str(detail)[:600]))
    failed |= not ok
good = "correct horse battery staple 1729"
code, body = register("old.breach@example.com", good)
meta = body.get("identity", {}).get("metadata_admin") or {}
if code == 200 and not meta:
    _, ident = call("GET", adm + "/admin/identities/" + body["identity"]["id"])
    meta = ident.get("metadata_admin") or {}
v = meta.get("breachd", {})
check(code == 200 and v.get("exposed") is True and v.get("decision") == "step_up" and v.get("breaches") == ["OldBreach"],
      "an exposed address registers, with metadata_admin.breachd", (code, meta or body))
code, body = register("clean@example.com", good)
_, ident = call("GET", adm + "/admin/identities/" + body.get("identity", {}).get("id", "none"))
v = (ident.get("metadata_admin") or {}).get("breachd", {})
check(code == 200 and v.get("exposed") is False and v.get("decision") == "allow", "a clean address registers, exposed: false", (code, ident))
code, body = register("new.breach@example.com", good)
check(code == 400 and any("known data breach" in m for m in messages(body)), "an address of a recent breach is refused on its email", (code, messages(body) or body))
code, body = register("another@example.com", "Password123!")
check(code == 400 and any("data breach" in m.lower() for m in messages(body)), "a password breachd's corpus knows is refused by Kratos's check", (code, messages(body) or body))
code, body = login("old.breach@example.com", good)
check(code == 200 and "session_token" in body, "the exposed account logs in (the policy does not block it at login)", (code, body))
sys.exit(1 if failed else 0)
PY
echo "kratos-e2e: passed (logs in $OUT)"
