#!/usr/bin/env bash
# bench/refresh.sh: refreshing a Pwned Passwords download in place.
#
# Writes a synthetic Pwned-Passwords-shaped SHA-1 corpus of SIZE hashes
# (corpusgen --pwned, sorted), imports it into a fresh data directory as
# release PP-1 (the corpus's base), imports the same file again as PP-2 (a
# newer full download: every hash becomes a Badger row carrying both
# releases' entries), then deletes PP-1 ('breachd breach delete --kind
# sha1'). It reports each step's wall time, peak RSS and its anonymous part, and the data
# directory's size after it, into bench/out/refresh-SIZE.md. Offline, one
# run: the steps take minutes, and their ratios are what matters.
#
# Usage: bench/refresh.sh                      16.7M hashes (about 6 minutes)
#        SIZE=1000000 bench/refresh.sh          a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-16777216}
WORK=${WORK:-$(mktemp -d)}
trap 'rm -rf "$WORK"' EXIT

mkdir -p bench/out "$WORK"
go build -o bin/ ./cmd/breachd ./cmd/corpusgen
bin/corpusgen --pwned "$SIZE" --out "$WORK/pwned.txt"
for n in 1 2; do
  echo "{\"Name\":\"PP-$n\",\"Title\":\"Pwned Passwords (synthetic) $n\"}" > "$WORK/rel-$n.json"
done

: > "$WORK/steps.txt"
# Peak RSS counts the pages of the files Badger and the indexes map, which
# the kernel takes back under pressure; what could run a host out of memory
# is the anonymous part (the heap), sampled from /proc every 0.2 s.
step() { # name command... -> a line: name seconds peak-KiB peak-anon-KiB data-MiB
  local name=$1 pid anon peak=0
  shift
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" > /dev/null &
  pid=$!
  while kill -0 "$pid" 2> /dev/null; do
    for p in $(pgrep -P "$pid"); do
      anon=$(awk '/^RssAnon/ { print $2 }' "/proc/$p/status" 2> /dev/null || true)
      [[ -n $anon && $anon -gt $peak ]] && peak=$anon
    done
    sleep 0.2
  done
  wait "$pid"
  echo "$name $(cat "$WORK/time.txt") $peak $(du -sm "$WORK/data" | cut -f1)" >> "$WORK/steps.txt"
}
step "first release (the base)" bin/breachd import --kind sha1 --data "$WORK/data" --manifest "$WORK/rel-1.json" "$WORK/pwned.txt"
step "the same file again as a second release" bin/breachd import --kind sha1 --data "$WORK/data" --manifest "$WORK/rel-2.json" "$WORK/pwned.txt"
step "the first release deleted" bin/breachd breach delete --kind sha1 --data "$WORK/data" PP-1

{
  echo "### Refreshing a download in place: $SIZE synthetic SHA-1 hashes, $(nproc) cores ($(date -u +%Y-%m-%d))"
  echo
  echo "| step | wall (s) | peak RSS (MiB) | of it anonymous, peak (MiB) | data directory after (MiB) |"
  echo "|---|---:|---:|---:|---:|"
  # The step's name has spaces: the last four fields are the figures.
  awk '{ d = $NF; a = $(NF-1); r = $(NF-2); s = $(NF-3); $NF = ""; $(NF-1) = ""; $(NF-2) = ""; $(NF-3) = ""; sub(/ +$/, "");
         printf "| %s | %s | %d | %d | %s |\n", $0, s, r / 1024, a / 1024, d }' "$WORK/steps.txt"
} | tee "bench/out/refresh-$SIZE.md"
