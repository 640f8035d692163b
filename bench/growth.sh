#!/usr/bin/env bash
# bench/growth.sh: how lookups, imports and memory grow with the corpus.
# For each size it runs the store lookup benchmarks on a store of that many
# random digests (with the filter's measured false-positive rate), imports a
# Sega-shaped dump of that many rows end to end, and serves it to the load
# generator to read the daemon's RSS. Writes bench/GROWTH.md.
#
# Usage: bench/growth.sh            1.29M and 10M keys (about 10 minutes)
#        SIZES="100000000" OUT=bench/GROWTH-100M.md bench/growth.sh   chosen sizes, elsewhere
#        BENCH_100M=1 bench/growth.sh   adds 100M keys: about 13 GB of disk
#                                       (a 6.6 GB dump and the corpus) and 8 GB of RAM
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
COUNT=${COUNT:-3}
WORK=${WORK:-$(mktemp -d)}
trap 'rm -rf "$WORK"' EXIT
mkdir -p bench/out
SIZES=${SIZES:-"1290775 10000000"}
[ -n "${BENCH_100M:-}" ] && SIZES="$SIZES 100000000"
OUT=${OUT:-bench/GROWTH.md}
go build -o bin/ ./cmd/... ./bench/loadgen

IMPORTS="" LOADS=""
for n in $SIZES; do
  echo "== $n keys: store benchmarks" >&2
  BREACHD_BENCH_KEYS=$n go test ./store -run '^$' -bench 'BenchmarkLookup/opts=default|BenchmarkLookupBatch' \
    -count "$COUNT" -timeout 60m | tee "bench/out/growth-$n.txt" >&2
  echo "== $n rows: dump, import, serve" >&2
  bin/corpusgen --records "$n" --out "$WORK/dump.csv" 2>/dev/null
  IMPORTS+=$(import_row "$WORK/dump.csv" "$WORK/data" demo/segapass.manifest.json "$n")$'\n'
  LOADS+="#### $n rows"$'\n\n'$(bin/loadgen --data "$WORK/data" --corpus "$WORK/dump.csv" \
    --concurrency 64 --rounds 1 --duration 2s)$'\n\n'
  rm -rf "$WORK/dump.csv" "$WORK/data"
done

{
  echo "# Growth"
  echo
  echo "Written by \`bench/growth.sh\`; the analysis is in bench/README.md."
  echo
  machine
  echo
  echo "## Store lookups by corpus size"
  echo
  echo "Command: \`BREACHD_BENCH_KEYS=N go test ./store -run '^\$' -bench 'BenchmarkLookup/opts=default|BenchmarkLookupBatch' -count $COUNT\`."
  echo "\`false-pos/op\` on the absent benchmark is the filter's measured false-positive rate; \`model-fpr\` what its"
  echo "shape predicts at the stored key count; \`target-fpr\` the rate it is sized for at capacity."
  echo
  echo '```'
  bin/tools/benchstat -col /keys $(for n in $SIZES; do echo "bench/out/growth-$n.txt"; done) 2>/dev/null ||
    for n in $SIZES; do bin/tools/benchstat "bench/out/growth-$n.txt"; done
  echo '```'
  echo
  echo "## Import by size"
  echo
  echo "\`bin/corpusgen --records N\` (Sega-shaped CSV, about 0.4% malformed rows) imported into a fresh directory."
  echo
  import_header
  printf '%s' "$IMPORTS"
  echo
  echo "## Serving by size"
  echo
  echo "\`bin/loadgen --concurrency 64 --rounds 1 --duration 2s\` against a daemon serving each corpus."
  echo
  printf '%s' "$LOADS"
} > "$OUT"
echo "wrote $OUT" >&2
