#!/usr/bin/env bash
# bench/reopen.sh: how long a daemon takes to open its corpus after a crash
# during a later import, against a clean reopen and a forced filter rebuild.
# For each size: import a Sega-shaped dump of that many rows; then, RUNS
# times, start a later import of a 300,000-row dump, SIGKILL it at a random
# moment, and time 'breachd serve' opening the store (its open_duration log
# field: Badger, the saved filter, the catalogue). Writes bench/REOPEN.md.
#
# Usage: bench/reopen.sh                      1.29M and 10M rows (about 5 minutes)
#        SIZES=1290775 RUNS=3 bench/reopen.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
RUNS=${RUNS:-5}
SIZES=${SIZES:-"1290775 10000000"}
OUT=${OUT:-bench/REOPEN.md}
WORK=${WORK:-$(mktemp -d)}
trap 'rm -rf "$WORK"' EXIT
go build -o bin/ ./cmd/...

# open_time DIR: starts serve on DIR, waits for its "serving" line, prints
# open_duration in seconds and whether the filter was rebuilt, stops it.
open_time() {
  local log=$WORK/serve.log port
  port=$(free_port)
  bin/breachd serve --data "$1" --addr 127.0.0.1:$port --log-level info >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 6000); do
    grep -q '"msg":"serving"' "$log" && break
    kill -0 $pid 2>/dev/null || { cat "$log" >&2; return 1; }
    sleep 0.02
  done
  kill -TERM $pid; wait $pid || true
  local ns rebuilt=no
  ns=$(grep -o '"open_duration":[0-9]*' "$log" | cut -d: -f2)
  grep -q 'rebuilding bloom filter' "$log" && rebuilt=yes
  awk -v ns="$ns" -v r="$rebuilt" 'BEGIN { printf "%.3f %s\n", ns / 1e9, r }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

bin/corpusgen --records 300000 --seed 7 --domain later.example --out "$WORK/later.csv" 2>/dev/null
cat > "$WORK/later.json" <<'JSON'
{"Name": "Later", "Title": "Later", "BreachDate": "2026-01-01"}
JSON
ROWS=""
for n in $SIZES; do
  echo "== $n rows" >&2
  bin/corpusgen --records "$n" --out "$WORK/dump.csv" 2>/dev/null
  rm -rf "$WORK/base"
  bin/breachd import --data "$WORK/base" --manifest demo/segapass.manifest.json "$WORK/dump.csv" >/dev/null
  rm -f "$WORK/dump.csv"
  clean=() crashed=() rebuilt=() rebuilds=0
  for r in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/run"; cp -a "$WORK/base" "$WORK/run"
    clean+=("$(open_time "$WORK/run" | cut -d' ' -f1)")
    # A later import, killed at a random moment within its first 2.5 s.
    bin/breachd import --data "$WORK/run" --manifest "$WORK/later.json" "$WORK/later.csv" >/dev/null 2>&1 &
    ipid=$!
    sleep "0.$(( RANDOM % 10 ))$(( RANDOM % 10 ))"; sleep $(( RANDOM % 2 ))
    kill -KILL $ipid 2>/dev/null || true; wait $ipid 2>/dev/null || true
    read -r t rb < <(open_time "$WORK/run")
    crashed+=("$t"); [ "$rb" = yes ] && rebuilds=$((rebuilds + 1))
    # The counterfactual: the same crash with no usable saved filter.
    rm -f "$WORK/run"/emails/breachd.bloom # the layout since 2026-12: DATA/emails
    rebuilt+=("$(open_time "$WORK/run" | cut -d' ' -f1)")
    echo "  run $r: clean ${clean[-1]}s, after the kill ${crashed[-1]}s (rebuilt: $rb), with the filter removed ${rebuilt[-1]}s" >&2
  done
  ROWS+="| $n | $(printf '%s\n' "${clean[@]}" | median) | $(printf '%s\n' "${crashed[@]}" | median) | $rebuilds of $RUNS | $(printf '%s\n' "${rebuilt[@]}" | median) |"$'\n'
done

{
  echo "# Reopen after a crash"
  echo
  echo "Written by \`bench/reopen.sh\`. Each run copies a freshly imported corpus, opens it cleanly, then kills a"
  echo "later import of 300,000 rows (\`breachd import --data\`) with SIGKILL at a random moment in its first 2.5 s"
  echo "and opens it again; then removes the saved filter and opens it a third time, which forces the rebuild a"
  echo "crash used to cause. Times are \`breachd serve\`'s \`open_duration\` (Badger, saved filter, catalogue), medians of $RUNS."
  echo
  machine
  echo
  echo "| rows | clean reopen s | reopen after a kill s | filter rebuilt after a kill | reopen with the filter removed s |"
  echo "|---:|---:|---:|---:|---:|"
  printf '%s' "$ROWS"
} > "$OUT"
cat "$OUT"
