# Shared by the scripts of bench/: machine facts, an import measured with
# /usr/bin/time, and free ports. Source it; it expects to run from the repo
# root.

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

# free_port prints a loopback port nothing listens on, drawn below the
# kernel's ephemeral range (ip_local_port_range), as internal/porttest does
# for the tests: a port in that range can be the local port of any
# outgoing connection on the machine, and a daemon's listen on it then
# fails ("address already in use"; range.sh's once did).
free_port() {
  local low p
  low=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$low" -gt 21000 ] || low=32768
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % (low - 20000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "free_port: no free port below $low" >&2
  return 1
}
