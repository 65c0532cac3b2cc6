#!/usr/bin/env bash
# Compression on this machine (docs/BENCHMARKS.md, "Compression"), on the local three-node
# cluster (start-cluster.sh), all in one run: for each message size in BENCH_SIZES and each
# codec (none, gzip, snappy, lz4, zstd), a topic of its own (6 partitions, RF 3) gets
# BENCH_MESSAGES JSON-like messages (`sluice bench produce --payload json`, each different)
# from 4 producers, then is read back whole (`sluice bench consume`). One line per run:
# produce msgs/s and payload MB/s, p50/p99 send-to-ack latency, segment bytes on disk per
# message (one replica; the .log files' growth over the three brokers, divided by 3), consume
# msgs/s, and the seconds a consumer with a 10 % tag filter takes to read the topic (every
# batch holds every tag, so a compressed one is decompressed and rebuilt by the broker).
#
# Usage: scripts/bench-compression.sh
# Environment: SLUICE_BIN_DIR (prebuilt sluice and sluice-broker; unset, release binaries are
#              built), SLUICE_BENCH_DIR (work directory; default a new one under /tmp),
#              BENCH_MESSAGES (per run, default 300000), BENCH_SIZES (default "100 1024"),
#              BENCH_CODECS (default "none gzip snappy lz4 zstd").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
messages="${BENCH_MESSAGES:-300000}"
read -r -a sizes <<<"${BENCH_SIZES:-100 1024}"
read -r -a codecs <<<"${BENCH_CODECS:-none gzip snappy lz4 zstd}"
work="${SLUICE_BENCH_DIR:-$(mktemp -d /tmp/sluice-bench-compression.XXXXXX)}"
if [ -z "${SLUICE_BIN_DIR:-}" ]; then
  (cd "$root" && cargo build --release --locked -p sluice-broker -p sluice-cli --bins >&2)
  export SLUICE_BIN_DIR="${CARGO_TARGET_DIR:-$root/target}/release"
fi
sluice="$SLUICE_BIN_DIR/sluice"

# Bytes of every partition segment (.log) of the three brokers: what the logs hold, without
# the preallocated index files.
segment_bytes() {
  find "$work/data" -path '*/partitions/*' -name '*.log' -printf '%s\n' | awk '{s += $1} END {printf "%d", s}'
}

# Waits (up to 60 s) until the segments hold at most $1 bytes: a deleted topic's replicas are
# removed in the background, and the next run's growth must not count their removal.
settle() {
  local deadline=$((SECONDS + 60))
  while [ "$(segment_bytes)" -gt "$1" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
}

cleanup() { SLUICE_DATA_DIR="$work/data" "$root/scripts/stop-cluster.sh" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
SLUICE_DATA_DIR="$work/data" "$root/scripts/start-cluster.sh" >/dev/null

echo "$messages JSON-like messages per run, 6 partitions, RF 3, 4 producers x 256 in flight ($(nproc) cores)"
printf '%-6s %-7s %10s %8s %8s %8s %10s %12s %12s\n' size codec "msgs/s" "MB/s" "p50 ms" "p99 ms" "B/msg disk" \
  "consume/s" "10% filter s"
for size in "${sizes[@]}"; do
  for codec in "${codecs[@]}"; do
    topic="compression-$size-$codec"
    before="$(segment_bytes)"
    produced="$("$sluice" bench produce --topic "$topic" --partitions 6 --replication-factor 3 \
      --count "$messages" --message-bytes "$size" --payload json --compression "$codec" \
      --producers 4 --max-in-flight 256 --tags 10 --output json 2>/dev/null)"
    after="$(segment_bytes)"
    consumed="$("$sluice" bench consume --topic "$topic" --output json 2>/dev/null)"
    filtered="$("$sluice" bench consume --topic "$topic" --tag tag-3 --output json 2>/dev/null)"
    python3 - "$size" "$codec" "$messages" "$((after - before))" "$produced" "$consumed" "$filtered" <<'PY'
import json, sys
size, codec, n, disk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
p, c, f = (json.loads(a) for a in sys.argv[5:8])
lat = p["latency_us"]
print(f"{size:<6} {codec:<7} {p['msgs_per_sec']:>10.0f} {p['mb_per_sec']:>8.2f} {lat['p50'] / 1000:>8.2f} "
      f"{lat['p99'] / 1000:>8.2f} {disk / 3 / n:>10.1f} {c['msgs_per_sec']:>12.0f} {f['seconds']:>12.2f}")
PY
    "$sluice" topic delete "$topic" >/dev/null
    settle "$before"
  done
done
