#!/usr/bin/env bash
# Broker-side filters on this machine (docs/BENCHMARKS.md, "Filters"), on the local three-node
# cluster (start-cluster.sh), all in one run:
#   - two topics of BENCH_MESSAGES 100-byte messages (6 partitions, RF 3) tagged tag-0 ..
#     tag-99, so one tag is 1 %: `mixed`, the tag changing with every message (every batch
#     holds every tag: the brokers must look at each message's tag), and `runs`, each tag on
#     1,000 messages in a row (events of one kind in bursts: whole batches are skipped by
#     their tag summary);
#   - reading each all (what a client filtering for itself must read), then with the broker
#     filters --tag tag-7 and --filter "TAGS = 'tag-7'": wall time, messages, and the batch
#     bytes the brokers sent (sluice_fetch_bytes_total, summed over the brokers);
#   - the cost for a consumer without a filter: reading an untagged topic of the same size,
#     and, with SLUICE_OLD_BIN_DIR set to binaries from before filters existed, the same on a
#     cluster of those.
#
# Usage: scripts/bench-filters.sh
# Environment: SLUICE_BIN_DIR (prebuilt binaries; unset, release binaries are built),
#              SLUICE_OLD_BIN_DIR (optional: the binaries to compare the unfiltered read with),
#              SLUICE_BENCH_DIR (work directory; default a new one under /tmp),
#              BENCH_MESSAGES (default 10000000).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
messages="${BENCH_MESSAGES:-10000000}"
work="${SLUICE_BENCH_DIR:-$(mktemp -d /tmp/sluice-bench-filters.XXXXXX)}"
if [ -z "${SLUICE_BIN_DIR:-}" ]; then
  (cd "$root" && cargo build --release --locked -p sluice-broker -p sluice-cli --bins >&2)
  export SLUICE_BIN_DIR="${CARGO_TARGET_DIR:-$root/target}/release"
fi
new_bin="$SLUICE_BIN_DIR"

# Batch bytes the three brokers have returned to fetches so far.
fetched_bytes() {
  local total=0 port
  for port in 9191 9192 9193; do
    total=$((total + $(curl -s "http://127.0.0.1:$port/metrics" |
      awk '/^sluice_fetch_bytes_total/ {s += $NF} END {printf "%d", s}')))
  done
  echo "$total"
}

# Runs `sluice bench consume` with the given arguments; prints one line of figures.
consume() {
  local label="$1" b0 b1 out
  shift
  b0="$(fetched_bytes)"
  out="$("$sluice" bench consume --output json "$@" 2>/dev/null)"
  b1="$(fetched_bytes)"
  python3 - "$label" "$((b1 - b0))" "$out" <<'EOF'
import json, sys
label, sent, v = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
print(f"{label:<44} {v['messages']:>10} msgs  {v['seconds']:7.2f} s  {v['msgs_per_sec']:>10.0f} msgs/s  "
      f"{sent / 1e6:9.1f} MB sent by the brokers")
EOF
}

produce() {
  "$sluice" bench produce --topic "$1" --partitions 6 --replication-factor 3 --count "$messages" \
    --message-bytes 100 --producers 4 "${@:2}" 2>/dev/null | head -1
}

start() { SLUICE_DATA_DIR="$1" SLUICE_BIN_DIR="$2" "$root/scripts/start-cluster.sh" >/dev/null; }
stop() { SLUICE_DATA_DIR="$1" "$root/scripts/stop-cluster.sh" >/dev/null; }

sluice="$new_bin/sluice"
start "$work/new" "$new_bin"
echo "== $messages messages of 100 B, 6 partitions, RF 3 ($work)"
produce mixed --tags 100
produce runs --tags 100 --tag-run 1000
produce plain
for topic in mixed runs; do
  consume "$topic, everything (client-side filtering)" --topic "$topic"
  consume "$topic, --tag tag-7 (1 %)" --topic "$topic" --tag tag-7
  consume "$topic, --filter \"TAGS = 'tag-7'\" (1 %)" --topic "$topic" --filter "TAGS = 'tag-7'"
done
consume "untagged, no filter" --topic plain
stop "$work/new"

if [ -n "${SLUICE_OLD_BIN_DIR:-}" ]; then
  sluice="$SLUICE_OLD_BIN_DIR/sluice"
  start "$work/old" "$SLUICE_OLD_BIN_DIR"
  echo "== the same untagged topic on binaries from before filters ($SLUICE_OLD_BIN_DIR)"
  produce plain
  consume "untagged, no filter (before filters)" --topic plain
  stop "$work/old"
fi
rm -rf "$work"
