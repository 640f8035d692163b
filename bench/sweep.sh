#!/usr/bin/env bash
# bench/sweep.sh: bulk sweeps at real exposure rates, end to end.
#
# Builds the binaries, generates a Sega Pass-shaped corpus of SIZE rows,
# imports it into a fresh data directory (the offline import leaves the
# lookup index built), serves it, and times `breachctl check` over sweep
# files of ROWS addresses in which 0%, 10% and 50% are accounts of the
# corpus (`corpusgen --sweep --exposed`), CSV in, JSON Lines out. Each
# round runs the three rates in turn, so their ratios come from one run;
# the table gives medians over RUNS rounds, the ratio to 0% and the CPU time
# of the CLI and of the daemon, in all and per row (issue 21 asks at most
# 0.5 µs for the CLI and 0.2 µs for the daemon), for a daemon with the
# lookup index and one without. Every report is checked for the exact number of exposed rows.
#
# Usage: bench/sweep.sh                    1.29M corpus, 1M-row sweeps, 5 rounds
#        SIZE=100000000 RUNS=3 bench/sweep.sh   (about 35 minutes, 30 GB of disk)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
RUNS=${RUNS:-5}
SIZE=${SIZE:-1290775}
ROWS=${ROWS:-1000000}
RATES=${RATES:-"0 10 50"}
WORK=${WORK:-$(mktemp -d)}
trap 'kill ${DAEMON:-} 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT

go build -o bin/ ./cmd/...
bin/corpusgen --records "$SIZE" --out "$WORK/corpus.csv" 2>/dev/null
# Its summary line only; not through "| head -1", which under pipefail
# failed the script with SIGPIPE when import wrote its next line late.
bin/breachd import --data "$WORK/data" --manifest demo/segapass.manifest.json "$WORK/corpus.csv" > "$WORK/import.out"
head -1 "$WORK/import.out" >&2
declare -A WANT
for p in $RATES; do
  bin/corpusgen --records "$SIZE" --sweep "$ROWS" --exposed "$p" --out "$WORK/sweep-$p.csv" 2> "$WORK/gen-$p.txt"
  WANT[$p]=$(awk '{ print $4 }' "$WORK/gen-$p.txt")
done
rm -f "$WORK/corpus.csv"

# Two daemons over copies of the corpus: with the lookup index (the
# default) and without it (--index=false: every filter "maybe" is confirmed
# in Badger, as before the index), alternated within each round.
cp -a "$WORK/data" "$WORK/data-noindex"
declare -A ADDR PID
start() { # label dir flags...
  local label=$1 dir=$2; shift 2
  ADDR[$label]=127.0.0.1:$(free_port)
  bin/breachd serve --data "$dir" --addr "${ADDR[$label]}" --log-level warn "$@" > "$WORK/serve-$label.out" &
  PID[$label]=$!
  for _ in $(seq 600); do grep -q serving "$WORK/serve-$label.out" 2>/dev/null && break; sleep 0.1; done
}
start index "$WORK/data"
start noindex "$WORK/data-noindex" --index=false
DAEMON="${PID[index]} ${PID[noindex]}"

ticks=$(getconf CLK_TCK)
daemon_cpu() { awk -v t="$ticks" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
: > "$WORK/runs.txt"
for i in $(seq "$RUNS"); do
  for label in index noindex; do
    for p in $RATES; do
      before=$(daemon_cpu "${PID[$label]}")
      /usr/bin/time -f "%e %U %S" -o "$WORK/time" \
        bin/breachctl check --addr "${ADDR[$label]}" --file "$WORK/sweep-$p.csv" --format jsonl --out "$WORK/report.jsonl" 2>/dev/null || true
      after=$(daemon_cpu "${PID[$label]}")
      got=$(grep -c '"exposed":true' "$WORK/report.jsonl" || true)
      if [ "$got" != "${WANT[$p]}" ]; then
        echo "sweep at $p% ($label): $got rows exposed, want ${WANT[$p]}" >&2
        exit 1
      fi
      read -r wall user sys < "$WORK/time"
      echo "$label $p $wall $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') $(awk -v a="$after" -v b="$before" 'BEGIN { print a - b }') $got" >> "$WORK/runs.txt"
      echo "round $i, $label, $p% exposed: $wall s" >&2
    done
  done
done

echo "Corpus of $SIZE rows; sweeps of $ROWS addresses (CSV in, JSON Lines out); medians of $RUNS rounds, daemons and rates alternated within each round."
echo
echo "| daemon | exposed | rows exposed | wall s | rows/s | ratio to 0% | CLI CPU s | daemon CPU s | CLI µs CPU/row | daemon µs CPU/row |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -v rows="$ROWS" '
  { k = $1 " " $2; w[k] = w[k] " " $3; c[k] = c[k] " " $4; d[k] = d[k] " " $5; x[k] = $6
    if (!(k in seen)) { seen[k] = 1; order[++n] = k } }
  function med(s,   a, k, i, j, t) {
    k = split(s, a, " ")
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
  END {
    for (i = 1; i <= n; i++) { k = order[i]; split(k, lp, " "); r = rows / med(w[k])
      if (lp[2] == 0) base[lp[1]] = r
      printf "| %s | %s%% | %s | %.2f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", lp[1], lp[2], x[k], med(w[k]), r, r / base[lp[1]], med(c[k]), med(d[k]), 1e6 * med(c[k]) / rows, 1e6 * med(d[k]) / rows } }
' "$WORK/runs.txt"
kill ${PID[index]} ${PID[noindex]}; wait ${PID[index]} ${PID[noindex]} 2>/dev/null || true; DAEMON=
