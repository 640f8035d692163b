#!/usr/bin/env bash
# bench/replica.sh: read replicas through NATS JetStream, end to end.
#
# Starts Debian's nats-server with JetStream (installed if missing), a writer
# with the 1.29M Sega-shaped corpus ('serve --publish') and measures:
#   - a fresh replica ('serve --follow' on an empty directory): the time
#     from its start to SERVING, and the snapshot's bytes;
#   - a 100k-row import on the writer: the time from its commit (the
#     writer's log) to each of two replicas answering from the new version
#     (their logs), and the delta's bytes;
#   - unary Check QPS through loadgen over one replica, and round robin over
#     two (a name with both replicas' loopback addresses in /etc/hosts,
#     restored on exit), alternated RUNS times.
# On this 2-core machine the replicas, NATS and loadgen share the cores: the
# two-replica QPS shows the balancing works, not what two machines give.
#
# Usage: bench/replica.sh      (RUNS=3; needs root for /etc/hosts)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
mkdir -p bench/out
RUNS=${RUNS:-3}
SIZE=${SIZE:-1290775}
WORK=${WORK:-$(mktemp -d)}
PIDS=()
cp /etc/hosts "$WORK/hosts.orig"
trap 'kill ${PIDS[@]} 2>/dev/null || true; wait 2>/dev/null; cp "$WORK/hosts.orig" /etc/hosts; rm -rf "$WORK"' EXIT
command -v nats-server >/dev/null && command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq nats-server jq; }
go build -o bin/ ./cmd/... ./bench/loadgen

ms() { date -d "$1" +%s%3N; }   # RFC 3339 -> milliseconds
nats_port=$(free_port)
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$WORK/nats" > "$WORK/nats.log" 2>&1 & PIDS+=($!)
sleep 1
url=nats://127.0.0.1:$nats_port

bin/corpusgen --records "$SIZE" --out "$WORK/corpus.csv" 2>/dev/null
bin/corpusgen --records 100000 --seed 99 --domain delta.example --out "$WORK/delta.csv" 2>/dev/null
echo '{"Name":"Delta100k","Title":"100k-row delta"}' > "$WORK/delta.json"
bin/breachd import --data "$WORK/writer" --manifest demo/segapass.manifest.json "$WORK/corpus.csv" > /dev/null

serve() { # name dir args...
  local name=$1; shift
  bin/breachd serve --data "$@" --log-level info > "$WORK/$name.out" 2> "$WORK/$name.log" & PIDS+=($!)
}
serving() { for _ in $(seq 1200); do bin/breachctl health --addr "$1" >/dev/null 2>&1 && return; sleep 0.05; done; echo "$1 never served" >&2; exit 1; }
serve writer "$WORK/writer" --addr 127.0.0.1:7301 --publish "$url"
serving 127.0.0.1:7301
# The daemons log JSON lines: field F of the last line whose msg is M and
# that contains S.
field() { grep "\"msg\":\"$2\"" "$WORK/$1.log" | grep -- "$3" | tail -1 | jq -r ".$4"; }
for _ in $(seq 600); do grep -q '"msg":"corpus published"' "$WORK/writer.log" && break; sleep 0.1; done
snap_bytes=$(field writer "corpus published" '"kind":"snapshot"' bytes)

start=$(date +%s%3N)
serve replica1 "$WORK/r1" --addr 127.0.0.2:7355 --follow "$url"
serving 127.0.0.2:7355
fresh_ms=$(( $(date +%s%3N) - start ))
serve replica2 "$WORK/r2" --addr 127.0.0.3:7355 --follow "$url"
serving 127.0.0.3:7355

bin/breachd import --addr "unix://$(realpath "$WORK/writer")/breachd.sock" --manifest "$WORK/delta.json" "$WORK/delta.csv" > /dev/null
for r in replica1 replica2; do
  for _ in $(seq 600); do grep '"msg":"corpus followed"' "$WORK/$r.log" | grep -q '"kind":"delta"' && break; sleep 0.05; done
done
commit=$(field writer "import committed" '' time)
delta_bytes=$(field writer "corpus published" '"kind":"delta"' bytes)
lag=""
for r in replica1 replica2; do
  applied=$(field $r "corpus followed" '"kind":"delta"' time)
  lag="$lag $(( $(ms "$applied") - $(ms "$commit") ))"
done

echo "127.0.0.2 breachd-replicas" >> /etc/hosts
echo "127.0.0.3 breachd-replicas" >> /etc/hosts
: > "$WORK/qps.txt"
for _ in $(seq "$RUNS"); do
  for target in 127.0.0.2:7355 dns:///breachd-replicas:7355; do
    q=$(bin/loadgen --addr "$target" --corpus "$WORK/corpus.csv" --concurrency 64 --rounds 1 --duration 3s --streams 1 2>/dev/null \
      | awk '$1 == "|" && $2 == "64" { print $6; exit }')
    echo "$target ${q:-0}" >> "$WORK/qps.txt"
  done
done
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
one=$(awk '$1 == "127.0.0.2:7355" { print $2 }' "$WORK/qps.txt" | median)
two=$(awk '$1 != "127.0.0.2:7355" { print $2 }' "$WORK/qps.txt" | median)
{
  echo "### Read replicas through NATS JetStream ($(date -u +%Y-%m-%d), $(nats-server --version))"
  echo
  echo "| measure | value |"
  echo "|---|---|"
  echo "| fresh replica: start to SERVING, $SIZE-row corpus | $(awk -v m="$fresh_ms" 'BEGIN { printf "%.1f s", m / 1000 }') |"
  echo "| snapshot moved | $(awk -v b="$snap_bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }') |"
  echo "| 100k-row import: writer's commit to each replica applying it | ${lag# } ms |"
  echo "| delta moved | $(awk -v b="$delta_bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }') |"
  echo "| unary Check QPS, 64 callers: one replica / round robin over two (median of $RUNS) | $one / $two |"
} | tee bench/out/replica.md
