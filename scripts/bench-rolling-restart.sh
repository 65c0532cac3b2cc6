#!/usr/bin/env bash
# A rolling restart under load (docs/BENCHMARKS.md, "Rolling restarts"): the local three-node
# cluster (start-cluster.sh), a continuous `sluice bench produce` (BENCH_PARTITIONS partitions,
# RF 3, BENCH_PRODUCERS producers x BENCH_IN_FLIGHT in flight), and scripts/restart-cluster.sh
# restarting each broker in turn, BENCH_SETTLE seconds apart. Prints the acknowledgements of
# every second of the run, the longest time without any acknowledgement, the max and p999
# send-to-ack latency, failed sends, and each broker's stop time.
#
# Usage: scripts/bench-rolling-restart.sh
# Environment: SLUICE_BIN_DIR (prebuilt sluice and sluice-broker; unset, release binaries are
#              built), SLUICE_BENCH_DIR (work directory; default a new one under /tmp),
#              BENCH_PARTITIONS (default 6), BENCH_PRODUCERS (default 2), BENCH_IN_FLIGHT
#              (default 32), BENCH_SETTLE (seconds after each broker is back, default 8),
#              BENCH_MESSAGE_BYTES (default 100), BENCH_TAIL (seconds the load goes on after the
#              last restart, default 12: the last broker takes its leaderships back meanwhile).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${SLUICE_BENCH_DIR:-$(mktemp -d /tmp/sluice-bench-rolling.XXXXXX)}"
if [ -z "${SLUICE_BIN_DIR:-}" ]; then
  (cd "$root" && cargo build --release --locked -p sluice-broker -p sluice-cli --bins >&2)
  export SLUICE_BIN_DIR="${CARGO_TARGET_DIR:-$root/target}/release"
fi
sluice="$SLUICE_BIN_DIR/sluice"
export SLUICE_DATA_DIR="$work/data"

bench_pid=""
cleanup() {
  [ -z "$bench_pid" ] || kill "$bench_pid" 2>/dev/null || true
  "$root/scripts/stop-cluster.sh" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"$root/scripts/start-cluster.sh" >/dev/null
bootstrap="$(grep -o 'client_addr *= *"[^"]*"' "$root/cluster-configs/node1.toml" | cut -d'"' -f2 | paste -sd, -)"

"$sluice" --bootstrap "$bootstrap" bench produce --topic rolling --partitions "${BENCH_PARTITIONS:-6}" \
  --replication-factor 3 --producers "${BENCH_PRODUCERS:-2}" --max-in-flight "${BENCH_IN_FLIGHT:-32}" \
  --message-bytes "${BENCH_MESSAGE_BYTES:-100}" --duration 1h --output json \
  >"$work/summary.json" 2>"$work/progress.log" &
bench_pid=$!
sleep 5
SLUICE_RESTART_SETTLE="${BENCH_SETTLE:-8}" "$root/scripts/restart-cluster.sh" | tee "$work/restart.log" >&2
sleep "${BENCH_TAIL:-12}"
kill -INT "$bench_pid"
wait "$bench_pid" || true
bench_pid=""

stops="$(grep -o 'node [0-9]*: stopped in [0-9]* ms' "$work/restart.log" | sed 's/: stopped in /=/' | paste -sd' ' -)"
python3 - "$work/summary.json" "$work/progress.log" "$stops" <<'PY'
import json, re, sys
summary = json.load(open(sys.argv[1]))
per_second = [int(m.group(1)) for m in re.finditer(r"last second: (\d+) msgs/s", open(sys.argv[2]).read())]
lat = summary["latency_us"]
print("acknowledged per second:", " ".join(f"{i + 1}:{n}" for i, n in enumerate(per_second)))
print(f"messages {summary['messages']}, failed {summary['errors']}, {summary['msgs_per_sec']:.0f} msgs/s over {summary['seconds']:.1f} s")
print(f"longest time without an acknowledgement: {summary['max_ack_gap_us'] / 1000:.1f} ms")
print(f"send-to-ack latency ms: p50 {lat['p50'] / 1000:.2f}, p99 {lat['p99'] / 1000:.2f}, p999 {lat['p999'] / 1000:.2f}, max {lat['max'] / 1000:.2f}")
print(f"stop times: {sys.argv[3]}")
PY
