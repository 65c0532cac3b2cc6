#!/usr/bin/env bash
# Partition scale on this machine: the local three-node cluster (start-cluster.sh) holding
# many RF-3 partitions. Prints, for the issue's targets (docs/BENCHMARKS.md):
#   - how long creating them took, in topics of 100 partitions (INSUFFICIENT_CAPACITY stops it);
#   - how long until every partition had a leader;
#   - idle: CPU of the three brokers together over 30 s, each broker's RSS and open files
#     against its limit;
#   - after a full restart (stop-cluster.sh, start-cluster.sh): how long until all are led again;
#   - produce throughput to 1,000 of those partitions (sluice bench produce, keyed spread), and
#     the same load on a fresh cluster holding only those 1,000, side by side.
#
# Usage: scripts/bench-partitions.sh [PARTITIONS]   (default 10000)
# Environment: SLUICE_BIN_DIR (prebuilt binaries; unset, release binaries are built),
#              SLUICE_BENCH_DIR (work directory; default a new one under /tmp),
#              BENCH_MESSAGES (produce benchmark messages, default 300000).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
partitions="${1:-10000}"
messages="${BENCH_MESSAGES:-300000}"
work="${SLUICE_BENCH_DIR:-$(mktemp -d /tmp/sluice-bench-partitions.XXXXXX)}"
if [ -z "${SLUICE_BIN_DIR:-}" ]; then
  (cd "$root" && cargo build --release --locked -p sluice-broker -p sluice-cli --bins >&2)
  export SLUICE_BIN_DIR="${CARGO_TARGET_DIR:-$root/target}/release"
fi
sluice="$SLUICE_BIN_DIR/sluice"
export SLUICE_START_TIMEOUT=180

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
pids() { cat "$SLUICE_DATA_DIR"/node*.pid; }
leaderless() { "$sluice" cluster status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["leaderless_partitions"])'; }

# Waits until no partition is without a leader; prints the seconds it took from $1.
wait_led() {
  local t0="$1" n
  while true; do
    n="$(leaderless 2>/dev/null || echo unknown)"
    [ "$n" = 0 ] && break
    sleep 0.5
  done
  since "$t0"
}

# CPU seconds (user + system) the brokers have used so far.
cpu_seconds() {
  local total=0 pid ticks
  for pid in $(pids); do
    ticks="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
    total=$((total + ticks))
  done
  echo "scale=2; $total / $(getconf CLK_TCK)" | bc
}

report_idle() {
  local c0 c1 pid
  c0="$(cpu_seconds)"; sleep 30; c1="$(cpu_seconds)"
  echo "idle CPU, three brokers together: $(echo "scale=1; ($c1 - $c0) * 100 / 30" | bc) % of one core"
  for pid in $(pids); do
    echo "  pid $pid: RSS $(awk '/VmRSS/ {printf "%.0f MB", $2/1024}' "/proc/$pid/status"), open files $(ls "/proc/$pid/fd" | wc -l) of $(awk '/Max open files/ {print $4}' "/proc/$pid/limits"), memory maps $(wc -l < "/proc/$pid/maps")"
  done
}

cluster() { SLUICE_DATA_DIR="$1" "$root/scripts/$2-cluster.sh" >/dev/null; }

produce_1000() {
  "$sluice" bench produce --topic "$1" --partitions 1000 --replication-factor 3 --count "$messages" \
    --message-bytes 100 --producers 4 2>/dev/null | head -2
}

export SLUICE_DATA_DIR="$work/many"
cluster "$SLUICE_DATA_DIR" start
echo "== $partitions RF-3 partitions on three brokers ($work)"
t0="$(now)"
created=0
while [ "$created" -lt "$partitions" ]; do
  n=$((partitions - created < 100 ? partitions - created : 100))
  if ! out="$("$sluice" topic create "scale-$created" --partitions "$n" --replication-factor 3 2>&1)"; then
    echo "stopped after $created partitions: $out"
    break
  fi
  created=$((created + n))
done
echo "created $created partitions in $(since "$t0") s"
echo "all led $(wait_led "$t0") s after the first creation"
report_idle

cluster "$SLUICE_DATA_DIR" stop
t0="$(now)"
cluster "$SLUICE_DATA_DIR" start
echo "after a full restart: all led in $(wait_led "$t0") s"
report_idle

echo "== produce to 1,000 partitions, beside $created others"
produce_1000 "load-1000"
cluster "$SLUICE_DATA_DIR" stop

export SLUICE_DATA_DIR="$work/few"
cluster "$SLUICE_DATA_DIR" start
echo "== the same load on a cluster holding only those 1,000"
produce_1000 "load-1000"
cluster "$SLUICE_DATA_DIR" stop
echo "(data left in $work)"
