#!/usr/bin/env bash
# bench/range.sh: the Pwned Passwords face under load, end to end.
#
# Builds the binaries, writes a synthetic Pwned-Passwords-shaped SHA-1
# corpus of SIZE hashes (corpusgen --pwned: sorted HASH:COUNT lines, as the
# downloader writes them), times its import into a fresh data directory
# ('breachd import --kind sha1', with peak RSS), serves it with
# --http-addr, and drives GET /range/{random prefix} with wrk (Debian's;
# installed if missing), unpadded and with Add-Padding: true, alternated
# RUNS times, each for DURATION with CONNS connections. It reports
# requests/s and latency percentiles from wrk, and the daemon's own CPU
# time per request from /proc (user + system over the requests served).
#
# wrk is closed-loop: latency under overload is understated (coordinated
# omission); the QPS is the saturation rate on this 2-core machine with wrk
# sharing it.
#
# Usage: bench/range.sh                        10M hashes, 3 rounds of 10s
#        SIZE=100000000 bench/range.sh         100M (4.4 GB dump, ~8 GB data)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SIZE=${SIZE:-10000000}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
WORK=${WORK:-$(mktemp -d)}
KEEP=${KEEP:-}   # set to keep the dump between runs (bench/out/pw/)
trap 'kill ${DAEMON:-} 2>/dev/null || true; wait 2>/dev/null; [ -n "$KEEP" ] || rm -rf "$WORK"' EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
go build -o bin/ ./cmd/...
dump=bench/out/pw/pwned-$SIZE.txt
mkdir -p bench/out/pw
[ -s "$dump" ] || bin/corpusgen --pwned "$SIZE" --out "$dump"
echo '{"Name":"PwnedPasswords","Title":"Pwned Passwords (synthetic)"}' > "$WORK/rel.json"
/usr/bin/time -f "%e %M" -o "$WORK/import-time" \
  bin/breachd import --kind sha1 --data "$WORK/data" --manifest "$WORK/rel.json" "$dump" > "$WORK/import.out"
read -r secs rss < "$WORK/import-time"
du_data=$(du -sm "$WORK/data" | cut -f1)

port=$(free_port)
bin/breachd serve --data "$WORK/data" --addr 127.0.0.1:0 --http-addr "127.0.0.1:$port" --log-level warn > "$WORK/serve.out" &
DAEMON=$!
for _ in $(seq 600); do grep -q serving "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done


ticks=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$DAEMON/stat"; }
: > "$WORK/runs.txt"
for _ in $(seq "$RUNS"); do
  for padded in false true; do
    before=$(cpu)
    PADDING=$padded wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s bench/range.lua "http://127.0.0.1:$port" > "$WORK/wrk.out"
    after=$(cpu)
    reqs=$(awk '/requests in/ { print $1 }' "$WORK/wrk.out")
    rps=$(awk '/Requests\/sec/ { print $2 }' "$WORK/wrk.out")
    p50=$(awk '$1 == "50%" { print $2 }' "$WORK/wrk.out")
    p99=$(awk '$1 == "99%" { print $2 }' "$WORK/wrk.out")
    errs=$(awk '/Non-2xx|Socket errors/' "$WORK/wrk.out")
    [ -z "$errs" ] || { echo "errors under load: $errs" >&2; exit 1; }
    cpu_us=$(awk -v a="$after" -v b="$before" -v n="$reqs" -v t="$ticks" 'BEGIN { printf "%.1f", (a - b) / t / n * 1e6 }')
    echo "$padded $rps $p50 $p99 $cpu_us" >> "$WORK/runs.txt"
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
{
  echo "### /range on $SIZE synthetic SHA-1 hashes ($(date -u +%Y-%m-%d))"
  echo
  echo "Import: $(grep 'lines read' "$WORK/import.out" | awk '{ print $3 }') lines in ${secs}s ($(awk -v n="$SIZE" -v s="$secs" 'BEGIN { printf "%.0f", n / s }') hashes/s), peak RSS $((rss / 1024)) MiB, data directory $du_data MiB."
  echo
  echo "wrk, $CONNS connections, $DURATION × $RUNS alternated rounds, random prefixes; medians:"
  echo
  echo "| padding | requests/s | p50 | p99 | daemon CPU per request |"
  echo "|---|---|---|---|---|"
  for padded in false true; do
    rows=$(awk -v p="$padded" '$1 == p' "$WORK/runs.txt")
    echo "| $padded | $(echo "$rows" | awk '{ print $2 }' | median) | $(echo "$rows" | awk '{ print $3 }' | median) | $(echo "$rows" | awk '{ print $4 }' | median) | $(echo "$rows" | awk '{ print $5 }' | median) µs |"
  done
} | tee "bench/out/range-$SIZE.md"
