#!/usr/bin/env bash
# A short failure-injection run (jepsen/README.md): three brokers in network namespaces under a
# seeded schedule of kills, partitions, pauses and power-loss crashes, then the history check.
# Exits non-zero on any anomaly. Needs root. Long runs: see jepsen/README.md.
#
#   scripts/jepsen-smoke.sh                 # seed 1, 120 s
#   SEED=5 TIME_LIMIT=300 scripts/jepsen-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

seed="${SEED:-1}"
time_limit="${TIME_LIMIT:-120}"
faults="${FAULTS:-kill,partition,pause,lose-unfsynced}"
# Network 1 (namespaces sj1-*), so that the smoke can run beside a long run on network 0.
net="${NET:-1}"
target="${CARGO_TARGET_DIR:-target}"

# The debug profile: the test command has built it already, so this costs no release build.
cargo build --locked -p sluice-broker -p sluice-jepsen -p sluice-jepsen-fsync-log
run_dir="$target/jepsen-smoke/seed-$seed"
rm -rf "$run_dir"
status=0
"$target/debug/sluice-jepsen" run --seed "$seed" --time-limit "$time_limit" --faults "$faults" \
  --bin-dir "$target/debug" --run-dir "$run_dir" --net "$net" || status=$?
if [ "$status" -ne 0 ]; then
  echo "jepsen smoke failed (exit $status); the run is in $run_dir:" >&2
  tail -n 40 "$run_dir"/node*.log >&2 || true
fi
exit "$status"
