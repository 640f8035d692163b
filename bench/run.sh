#!/usr/bin/env bash
# bench/run.sh: the quick benchmark set behind `make bench`. It writes
# bench/RESULTS.md: the machine, the commands, benchstat medians with their
# spread over COUNT runs, the import of the Sega-shaped corpus, the load
# generator's report and the bulk sweeps. About 20 minutes on 2 cores.
#
# Usage: bench/run.sh [COUNT]   (default 6 runs per Go benchmark)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
COUNT=${1:-6}
OUT=bench/out
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
go build -o bin/ ./cmd/... ./bench/loadgen
test -f demo/segapass.csv || bin/corpusgen --out demo/segapass.csv

GOBENCH="go test -run ^\$ -bench . -count $COUNT ./store ./canon ./bench"
echo "== $GOBENCH" >&2
$GOBENCH | tee "$OUT/go.txt" >&2

echo "== import, 3 runs" >&2
IMPORTS=$(for i in 1 2 3; do import_row demo/segapass.csv "$WORK/data" demo/segapass.manifest.json "$i"; done)

echo "== loadgen" >&2
LOADGEN="bin/loadgen --data $WORK/data --corpus demo/segapass.csv --rounds 3 --duration 2s"
LOAD=$($LOADGEN)

echo "== sweep" >&2
SWEEP=$(RUNS=5 bash bench/sweep.sh)

echo "== CLI scaling" >&2
SCALING=$(RUNS=5 bash bench/cli-scaling.sh)

# Sections below the marker in the current file (measured by hand or by
# other scripts, each saying how) are kept.
MARKER='<!-- Sections below are kept by bench/run.sh: each names the command that made it. -->'
KEPT=$(awk -v m="$MARKER" 'f; $0 == m { f = 1 }' bench/RESULTS.md 2>/dev/null || true)

{
  echo "# Benchmark results"
  echo
  echo "Written by \`make bench\` (bench/run.sh); how to read them, the targets and the analysis are in bench/README.md."
  echo
  machine
  echo
  echo "## Go benchmarks"
  echo
  echo "Command: \`$GOBENCH\`, summarised by \`benchstat\` (median ± 95% confidence interval over $COUNT runs)."
  echo "Store benchmarks use a store of 1,290,775 random digests; absent digests are generated per call."
  echo
  echo '```'
  bin/tools/benchstat "$OUT/go.txt"
  echo '```'
  echo
  echo "## Import of the Sega-shaped corpus"
  echo
  echo "Command: \`/usr/bin/time bin/breachd import --data DIR --manifest demo/segapass.manifest.json demo/segapass.csv\`"
  echo "into a fresh DIR; the dump is \`bin/corpusgen\` with seed 2011 ($(stat -c %s demo/segapass.csv) bytes)."
  echo
  import_header
  echo "$IMPORTS"
  echo
  echo "## Load generator"
  echo
  echo "Command: \`$LOADGEN\` (the daemon serves the corpus imported above)."
  echo
  echo "$LOAD"
  echo
  echo "## Bulk sweep at 0%, 10% and 50% exposed"
  echo
  echo "Command: \`RUNS=5 bash bench/sweep.sh\`: \`breachctl check\` over 1,000,000 addresses of which 0%, 10% or 50%"
  echo "are accounts of the corpus (\`corpusgen --sweep --exposed\`), CSV in, JSON Lines out, against two daemons on this"
  echo "machine serving copies of the 1.29M corpus, with the lookup index and without it (\`--index=false\`)."
  echo
  echo "$SWEEP"
  echo
  echo "## The CLI from GOMAXPROCS=1 to 2"
  echo
  echo "Command: \`RUNS=5 bash bench/cli-scaling.sh\` (see the script for why p1 and p2 are what this 2-core machine can"
  echo "measure of issue 21's \"GOMAXPROCS=2 vs 1, the daemon on its own core\")."
  echo
  echo "$SCALING"
  echo
  echo "$MARKER"
  echo "$KEPT"
} > bench/RESULTS.md
echo "wrote bench/RESULTS.md" >&2
