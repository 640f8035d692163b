#!/usr/bin/env bash
# bench/sweep.sh: the bulk sweep of issue 3, end to end on this machine.
#
# Builds the binaries, generates the synthetic Sega Pass corpus (1,290,775
# rows) and 1,000,000 addresses that are not in it, imports the corpus into a
# fresh data directory, serves it, and times `breachctl check` over all
# 2,290,775 rows (CSV in, JSON Lines out) RUNS times, reporting wall time and
# the CPU time of the CLI and of the daemon for each run.
#
# Usage: bench/sweep.sh [RUNS]   (default 5; quote the median)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
WORK=$(mktemp -d)
trap 'kill "${DAEMON:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

go build -o bin/ ./cmd/...
bin/corpusgen --out "$WORK/sega.csv" 2>/dev/null
bin/corpusgen --seed 99 --records 1000000 --domain outside.example --dirty -1 --out "$WORK/outsiders.csv" 2>/dev/null
{ cat "$WORK/sega.csv"; tail -n +2 "$WORK/outsiders.csv"; } > "$WORK/sweep.csv"
bin/breachd import --data "$WORK/data" --manifest demo/segapass.manifest.json "$WORK/sega.csv" | head -1

ADDR=127.0.0.1:$((20000 + RANDOM % 20000))
bin/breachd serve --data "$WORK/data" --addr "$ADDR" --log-level warn > "$WORK/serve.out" &
DAEMON=$!
for _ in $(seq 50); do grep -q serving "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done

ticks=$(getconf CLK_TCK)
daemon_cpu() { awk -v t="$ticks" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$DAEMON/stat"; }
echo "run  wall_s  rows_per_s  cli_cpu_s  daemon_cpu_s"
for i in $(seq "$RUNS"); do
  before=$(daemon_cpu)
  /usr/bin/time -f "%e %U %S" -o "$WORK/time" \
    bin/breachctl check --addr "$ADDR" --file "$WORK/sweep.csv" --format jsonl --out "$WORK/report.jsonl" 2>/dev/null
  after=$(daemon_cpu)
  read -r wall user sys < "$WORK/time"
  awk -v i="$i" -v w="$wall" -v u="$user" -v s="$sys" -v b="$before" -v a="$after" \
    'BEGIN { printf "%3d  %6.2f  %10.0f  %9.2f  %12.2f\n", i, w, 2290775 / w, u + s, a - b }'
done
test "$(wc -l < "$WORK/report.jsonl")" -eq 2290775
