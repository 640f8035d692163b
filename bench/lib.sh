# Shared by bench/run.sh and bench/growth.sh: machine facts and an import
# measured with /usr/bin/time. Source it; it expects to run from the repo root.

machine() {
  local cpu mem
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
  echo "- Machine: $(nproc) cores, ${cpu:-unknown CPU}, $mem RAM, Linux $(uname -r)," \
    "transparent huge pages: $(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)"
  echo "- Go: $(go env GOVERSION) $(go env GOOS)/$(go env GOARCH); commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with local changes)')"
  echo "- Date: $(date -u +%Y-%m-%dT%H:%MZ). The machine is shared: compare ratios within one run, not absolute numbers across runs."
}

# import_row DUMP DIR MANIFEST LABEL: imports DUMP into a fresh DIR and prints
# a Markdown table row: label, rows, wall s, rows/s, MB/s, peak RSS, disk.
import_row() {
  local dump=$1 dir=$2 manifest=$3 label=$4 out
  rm -rf "$dir"
  out=$( { /usr/bin/time -f "TIME %e %M" bin/breachd import --data "$dir" --manifest "$manifest" "$dump"; } 2>&1 )
  local rows wall rss bytes disk
  rows=$(awk '/rows read/ { print $3 }' <<<"$out")
  read -r wall rss < <(awk '/^TIME/ { print $2, $3 }' <<<"$out")
  bytes=$(stat -c %s "$dump")
  disk=$(du -sm "$dir" | cut -f1)
  awk -v l="$label" -v r="$rows" -v w="$wall" -v m="$rss" -v b="$bytes" -v d="$disk" 'BEGIN {
    printf "| %s | %d | %.2f | %.0f | %.0f | %.0f | %d |\n", l, r, w, r / w, b / w / 1e6, m / 1024, d }'
}
import_header() {
  echo "| run | rows | wall s | rows/s | MB/s | peak RSS MiB | disk MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
}
