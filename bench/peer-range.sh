#!/usr/bin/env bash
# bench/peer-range.sh: /range against the best local Pwned Passwords server
# we know, tylerchr/pwnedpass (issue 21), side by side on one machine.
#
# Given a checkout of github.com/tylerchr/pwnedpass (the module proxy
# refuses it; it is never vendored here), it builds pwnd and pwngen from it
# in a scratch directory, writes one synthetic SHA-1 corpus of SIZE hashes
# with every 3-byte prefix present (corpusgen --pwned --every-prefix: pwngen
# needs them all), and builds each server's store from that same file,
# timing both (seconds, peak RSS: medians of BUILDS alternated builds) and
# measuring each on disk. It checks that both answer the same hashes for a
# sample of prefixes, then drives
# GET /range/{random 5-hex prefix} at both with wrk (the same Lua script),
# CONNS connections, alternated within each of RUNS rounds, and reports
# medians, the ratio breachd/pwnedpass, and each server's RSS after the
# load. breachd also runs padded (Add-Padding: true); pwnd does not pad.
# breachd runs twice, over copies of its store: on each HTTP server
# (http.server: fasthttp, the default, and net/http).
#
# Usage: PWNEDPASS_SRC=DIR bash bench/peer-range.sh
#        SIZE=33554432 CONNS="16 128" RUNS=5 BUILDS=3 DURATION=10s PWNEDPASS_SRC=DIR bash bench/peer-range.sh
# (pwnd listens on :8889, fixed in its source: that port must be free.)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
: "${PWNEDPASS_SRC:?set PWNEDPASS_SRC to a checkout of github.com/tylerchr/pwnedpass}"
[ -d "$PWNEDPASS_SRC/cmd/pwnd" ] && [ -d "$PWNEDPASS_SRC/cmd/pwngen" ] || { echo "$PWNEDPASS_SRC: no cmd/pwnd and cmd/pwngen" >&2; exit 2; }
SIZE=${SIZE:-16777216}
RUNS=${RUNS:-3}
BUILDS=${BUILDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-"16 128"}
WORK=${WORK:-$(mktemp -d)}
trap 'kill ${PWND:-} ${DAEMON:-} ${FAST:-} 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
(( SIZE >= 16777216 )) || { echo "SIZE must be at least 16777216: pwngen needs every 3-byte prefix" >&2; exit 2; }

mkdir -p bench/out
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
go build -o bin/ ./cmd/...
cp -a "$PWNEDPASS_SRC" "$WORK/peer"
(cd "$WORK/peer" && GOFLAGS=-mod=mod go build -o "$WORK/pwnd" ./cmd/pwnd && GOFLAGS=-mod=mod go build -o "$WORK/pwngen" ./cmd/pwngen)

bin/corpusgen --pwned "$SIZE" --every-prefix --out "$WORK/pwned.txt"
echo '{"Name":"PwnedPasswords","Title":"Pwned Passwords (synthetic)"}' > "$WORK/rel.json"
# BUILDS alternated builds of each store from the file, the last kept;
# medians of the seconds and peak RSS.
: > "$WORK/builds.txt"
for i in $(seq "$BUILDS"); do
  rm -rf "$WORK/peer.bin" "$WORK/data"
  /usr/bin/time -f "peer %e %M" -a -o "$WORK/builds.txt" "$WORK/pwngen" "$WORK/peer.bin" < "$WORK/pwned.txt" > /dev/null
  /usr/bin/time -f "ours %e %M" -a -o "$WORK/builds.txt" bin/breachd import --kind sha1 --data "$WORK/data" --manifest "$WORK/rel.json" "$WORK/pwned.txt" > /dev/null
done
rm -f "$WORK/pwned.txt"
build_median() { awk -v s="$1" -v f="$2" '$1 == s { print $f }' "$WORK/builds.txt" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
peer_secs=$(build_median peer 2); peer_rss=$(build_median peer 3)
ours_secs=$(build_median ours 2); ours_rss=$(build_median ours 3)
peer_disk=$(du -sm "$WORK/peer.bin" | cut -f1)
ours_disk=$(du -sm "$WORK/data" | cut -f1)

"$WORK/pwnd" --database "$WORK/peer.bin" > "$WORK/pwnd.out" 2>&1 &
PWND=$!
port=$(free_port)
BREACHD_HTTP_SERVER=net/http bin/breachd serve --data "$WORK/data" --addr 127.0.0.1:0 --http-addr "127.0.0.1:$port" --log-level warn > "$WORK/serve.out" &
DAEMON=$!
cp -a "$WORK/data" "$WORK/data-fast"
fport=$(free_port)
BREACHD_HTTP_SERVER=fasthttp bin/breachd serve --data "$WORK/data-fast" --addr 127.0.0.1:0 --http-addr "127.0.0.1:$fport" --log-level warn > "$WORK/serve-fast.out" &
FAST=$!
for _ in $(seq 600); do
  grep -q serving "$WORK/serve.out" 2>/dev/null && grep -q serving "$WORK/serve-fast.out" 2>/dev/null &&
    curl -fs -o /dev/null http://127.0.0.1:8889/range/00000 && break
  sleep 0.1
done

# The same hashes for the same prefixes (counts aside: pwnedpass keeps 16 bits of them).
for p in 00000 7A3F1 FFFFF $(for _ in $(seq 20); do printf '%05X ' $((RANDOM * 32 + RANDOM % 32)); done); do
  a=$(curl -fs "http://127.0.0.1:8889/range/$p" | tr -d '\r' | cut -d: -f1 | sort)
  b=$(curl -fs -A peer-range "http://127.0.0.1:$port/range/$p" | tr -d '\r' | cut -d: -f1 | sort)
  f=$(curl -fs -A peer-range "http://127.0.0.1:$fport/range/$p" | tr -d '\r' | cut -d: -f1 | sort)
  [ "$a" = "$b" ] && [ "$a" = "$f" ] || { echo "prefix $p: the servers answer different hashes" >&2; exit 1; }
done

load() { # server url padding conns -> requests/s
  PADDING=$3 wrk -t2 -c"$4" -d"$DURATION" -s bench/range.lua "$2" > "$WORK/wrk.out"
  ! grep -q 'Non-2xx\|Socket errors' "$WORK/wrk.out" || { echo "$1: errors under load" >&2; cat "$WORK/wrk.out" >&2; exit 1; }
  awk '/Requests\/sec/ { print $2 }' "$WORK/wrk.out"
}
: > "$WORK/runs.txt"
for _ in $(seq "$RUNS"); do
  for c in $CONNS; do
    echo "pwnd $c $(load pwnd http://127.0.0.1:8889 false "$c")" >> "$WORK/runs.txt"
    echo "breachd $c $(load breachd "http://127.0.0.1:$port" false "$c")" >> "$WORK/runs.txt"
    echo "breachd-padded $c $(load breachd "http://127.0.0.1:$port" true "$c")" >> "$WORK/runs.txt"
    echo "fast $c $(load breachd-fasthttp "http://127.0.0.1:$fport" false "$c")" >> "$WORK/runs.txt"
    echo "fast-padded $c $(load breachd-fasthttp "http://127.0.0.1:$fport" true "$c")" >> "$WORK/runs.txt"
  done
done
rss() { awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$1/status"; }
peer_serve_rss=$(rss "$PWND")
ours_serve_rss=$(rss "$DAEMON")
fast_serve_rss=$(rss "$FAST")

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
m() { awk -v s="$1" -v c="$2" '$1 == s && $2 == c { print $3 }' "$WORK/runs.txt" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
{
  echo "### /range: breachd against pwnedpass, $SIZE synthetic SHA-1 hashes, $(nproc) cores ($(date -u +%Y-%m-%d))"
  echo
  echo "wrk, random prefixes, $DURATION × $RUNS alternated rounds; builds: $BUILDS alternated; medians."
  echo
  echo "| figure | pwnedpass | breachd | breachd / pwnedpass |"
  echo "|---|---:|---:|---:|"
  for c in $CONNS; do
    p=$(m pwnd "$c"); o=$(m breachd "$c"); op=$(m breachd-padded "$c")
    echo "| /range req/s, $c connections, breachd on net/http | $p | $o | $(ratio "$o" "$p") |"
    echo "| /range req/s padded (breachd on net/http) against unpadded (pwnedpass), $c connections | $p | $op | $(ratio "$op" "$p") |"
    f=$(m fast "$c"); fp=$(m fast-padded "$c")
    echo "| /range req/s, $c connections, breachd on fasthttp (the default) | $p | $f | $(ratio "$f" "$p") |"
    echo "| /range req/s padded, $c connections, breachd on fasthttp | $p | $fp | $(ratio "$fp" "$p") |"
  done
  echo "| disk (MiB) | $peer_disk | $ours_disk | $(ratio "$ours_disk" "$peer_disk") |"
  echo "| serving RSS after the load (MiB), breachd on net/http | $peer_serve_rss | $ours_serve_rss | $(ratio "$ours_serve_rss" "$peer_serve_rss") |"
  echo "| serving RSS after the load (MiB), breachd on fasthttp | $peer_serve_rss | $fast_serve_rss | $(ratio "$fast_serve_rss" "$peer_serve_rss") |"
  echo "| building the store from the text file (s) | $peer_secs | $ours_secs | $(ratio "$ours_secs" "$peer_secs") |"
  echo "| peak RSS while building (MiB) | $((peer_rss / 1024)) | $((ours_rss / 1024)) | $(ratio "$ours_rss" "$peer_rss") |"
} | tee "bench/out/peer-range-$SIZE.md"
# Every round and build, for the spread the medians hide.
cat "$WORK/runs.txt" "$WORK/builds.txt" > "bench/out/peer-range-$SIZE-runs.txt"
