#!/usr/bin/env bash
# Sluice against NATS JetStream on this machine, in one run: the same produce load (message
# size, producers, duration) against
#   - a 3-node NATS JetStream cluster on loopback (Debian's nats-server), one replicas-3
#     file-storage stream, published to by scripts/nats-bench (async-nats);
#   - the 3-node Sluice cluster of scripts/start-cluster.sh, an RF-3 topic that fsyncs before
#     every acknowledgement (the default) and one with --flush-interval-ms, with
#     `sluice bench produce`;
# plus the disk's own append+fdatasync latency (before and after the loads), and prints one
# table. docs/BENCHMARKS.md explains the choices and reads a run's results.
#
# Needs: root for apt-get if nats-server or jq is missing; cargo; Linux /proc. Ports: NATS
# 14221-14223 (clients) and 16221-16223 (routes); Sluice those of cluster-configs/.
#
# Environment:
#   BENCH_DURATION          length of each load run, e.g. 30s (default 30s)
#   BENCH_PRODUCERS         concurrent producers in every run (default 4)
#   BENCH_SIZES             message sizes in bytes (default "100 1024")
#   BENCH_PARTITIONS        partitions of each Sluice topic (default 3)
#   BENCH_NATS_IN_FLIGHT    unacknowledged messages per NATS producer (default 256; see
#                           docs/BENCHMARKS.md)
#   BENCH_FLUSH_INTERVAL_MS the relaxed Sluice topic's --flush-interval-ms (default 100)
#   BENCH_FSYNC_COUNT       append+fdatasync calls per disk probe (default 2000)
#   BENCH_DIR               parent of this run's directory (default data/ at the repository
#                           root, git-ignored); it must be on the disk you mean to measure
#   BENCH_KEEP_DATA         1 keeps the brokers' data after the run (default: deleted; logs,
#                           configs and JSON results are always kept)
#   SLUICE_BIN_DIR          prebuilt sluice-broker and sluice (default: cargo build --release)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration="${BENCH_DURATION:-30s}"
producers="${BENCH_PRODUCERS:-4}"
read -r -a sizes <<<"${BENCH_SIZES:-100 1024}"
partitions="${BENCH_PARTITIONS:-3}"
nats_in_flight="${BENCH_NATS_IN_FLIGHT:-256}"
flush_ms="${BENCH_FLUSH_INTERVAL_MS:-100}"
fsync_count="${BENCH_FSYNC_COUNT:-2000}"
nats_nodes=(1 2 3)

die() { echo "bench-vs-nats: $*" >&2; exit 1; }
say() { echo "bench-vs-nats: $*" >&2; }

[[ "$duration" =~ ^[0-9]+(ms|s|m)?$ ]] || die "BENCH_DURATION=$duration is not a duration such as 30s"
# Each load run is bounded: its duration, plus setup and draining the acknowledgements.
duration_s=$(( ${duration%%[a-z]*} ))
case "$duration" in *ms) duration_s=$(( duration_s / 1000 )) ;; *m) duration_s=$(( duration_s * 60 )) ;; esac
run_timeout=$(( duration_s + 120 ))

# --- tools -----------------------------------------------------------------------------------
install_packages() {
  [ "$(id -u)" = 0 ] || die "$* missing: install it (apt-get install $*) or run as root"
  say "installing $* (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
missing=()
command -v nats-server >/dev/null || missing+=(nats-server)
command -v jq >/dev/null || missing+=(jq)
[ ${#missing[@]} -eq 0 ] || install_packages "${missing[@]}"
command -v cargo >/dev/null || die "cargo not found"

base="${BENCH_DIR:-$root/data}"
mkdir -p "$base" || die "cannot create $base"
run="$(mktemp -d "$(cd "$base" && pwd)/bench-vs-nats.XXXXXX")"
mkdir -p "$run/bin" "$run/results"
say "this run's directory: $run"

target="$(cd "$root" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)"
if [ -n "${SLUICE_BIN_DIR:-}" ]; then
  sluice_bin="$(cd "$SLUICE_BIN_DIR" && pwd)" || die "SLUICE_BIN_DIR=$SLUICE_BIN_DIR is not a directory"
else
  say "building the release binaries (cargo build --release --locked -p sluice-broker -p sluice-cli)"
  (cd "$root" && cargo build --release --locked -p sluice-broker -p sluice-cli) || die "the Sluice build failed"
  sluice_bin="$target/release"
fi
say "building scripts/nats-bench"
cargo build --release --locked --quiet --manifest-path "$root/scripts/nats-bench/Cargo.toml" \
  --target-dir "$target/nats-bench" || die "the nats-bench build failed"
# Copies, so that a rebuild in the shared target directory cannot swap a binary mid-run.
cp "$sluice_bin/sluice-broker" "$sluice_bin/sluice" "$target/nats-bench/release/nats-bench" "$run/bin/"
bin="$run/bin"

# --- clean-up: only the processes this run started, always ---------------------------------
nats_pids=()
sluice_started=0
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_nats
  if [ "$sluice_started" = 1 ]; then
    SLUICE_DATA_DIR="$run/sluice" "$root/scripts/stop-cluster.sh" >"$run/stop-sluice.log" 2>&1 || true
  fi
  if [ "${BENCH_KEEP_DATA:-0}" != 1 ]; then
    rm -rf "$run/nats/n"[0-9]/ "$run/sluice/node"[0-9]/
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Whether PID $1 is a live (not zombie) nats-server of this run.
nats_alive() {
  local state
  [ -r "/proc/$1/stat" ] || return 1
  state="$(sed 's/^.*) \(.\).*$/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
  [ "$state" != Z ] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "nats-server -c $run/nats/"
}

stop_nats() {
  local pid waited=0
  [ ${#nats_pids[@]} -gt 0 ] || return 0
  for pid in "${nats_pids[@]}"; do
    if nats_alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for pid in "${nats_pids[@]}"; do
    while nats_alive "$pid" && [ $waited -lt 200 ]; do sleep 0.1; waited=$((waited + 1)); done
    if nats_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  nats_pids=()
}

# Whether something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- the disk ----------------------------------------------------------------------------------
fsync_probe() {
  say "measuring append+fdatasync ($fsync_count x 4 KiB) in $run ($1)"
  timeout 300 "$bin/nats-bench" fsync --dir "$run" --count "$fsync_count" --block-bytes 4096 --output json \
    >"$run/results/fsync-$1.json" || die "the fdatasync probe failed"
}

# --- NATS JetStream ----------------------------------------------------------------------------
start_nats() {
  local n routes="" port
  for n in "${nats_nodes[@]}"; do
    for port in $((14220 + n)) $((16220 + n)); do
      listening "$port" && die "port $port is in use: stop whatever holds it"
    done
    routes+="nats-route://127.0.0.1:$((16220 + n)), "
  done
  mkdir -p "$run/nats"
  for n in "${nats_nodes[@]}"; do
    # Defaults otherwise: no sync_interval setting exists in 2.9 (docs/BENCHMARKS.md).
    cat >"$run/nats/n$n.conf" <<EOF
server_name: n$n
listen: 127.0.0.1:$((14220 + n))
jetstream {
  store_dir: "$run/nats/n$n"
}
cluster {
  name: bench
  listen: 127.0.0.1:$((16220 + n))
  routes: [${routes%, }]
}
EOF
    setsid nats-server -c "$run/nats/n$n.conf" >"$run/nats/n$n.log" 2>&1 </dev/null &
    nats_pids+=($!)
  done
  for n in "${nats_nodes[@]}"; do
    for _ in $(seq 1 300); do listening $((14220 + n)) && break; sleep 0.1; done
    listening $((14220 + n)) || die "nats-server n$n did not listen within 30 s: see $run/nats/n$n.log"
  done
  say "NATS $(nats-server --version) running: pids ${nats_pids[*]}"
}

nats_load() {
  local size=$1 name="nats-$1"
  say "NATS: $size B messages, $producers producers x $nats_in_flight in flight, $duration"
  timeout "$run_timeout" "$bin/nats-bench" produce \
    --servers nats://127.0.0.1:14221,nats://127.0.0.1:14222,nats://127.0.0.1:14223 \
    --stream "bench-$size" --create-stream --replicas 3 --message-bytes "$size" \
    --producers "$producers" --max-in-flight "$nats_in_flight" --duration "$duration" --output json \
    >"$run/results/$name.json" 2>"$run/results/$name.log" || die "the NATS run failed: see $run/results/$name.log"
}

# --- Sluice ------------------------------------------------------------------------------------
start_sluice() {
  sluice_started=1
  SLUICE_DATA_DIR="$run/sluice" SLUICE_BIN_DIR="$bin" "$root/scripts/start-cluster.sh" >"$run/start-sluice.log" 2>&1 \
    || { cat "$run/start-sluice.log" >&2; die "the Sluice cluster did not start"; }
  say "Sluice cluster running (data in $run/sluice)"
}

sluice_load() {
  local policy=$1 size=$2 name="sluice-$1-$2" flush=()
  [ "$policy" = relaxed ] && flush=(--flush-interval-ms "$flush_ms")
  timeout 90 "$bin/sluice" topic create "bench-$policy-$size" --partitions "$partitions" --replication-factor 3 \
    "${flush[@]}" >"$run/results/$name.create.log" 2>&1 || die "cannot create the topic: see $run/results/$name.create.log"
  say "Sluice ($policy): $size B messages, $producers producers, $duration"
  timeout "$run_timeout" "$bin/sluice" bench produce --topic "bench-$policy-$size" --message-bytes "$size" \
    --producers "$producers" --duration "$duration" --output json \
    >"$run/results/$name.json" 2>"$run/results/$name.log" || die "the Sluice run failed: see $run/results/$name.log"
}

# --- the run -----------------------------------------------------------------------------------
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
  echo "disk: $(df -h "$run" | awk 'NR == 2 {print $1 " (" $2 ", " $5 " used)"}')"
  echo "nats-server: $(nats-server --version)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$run/results/machine.txt"

fsync_probe start
start_nats
for size in "${sizes[@]}"; do nats_load "$size"; done
stop_nats
start_sluice
for size in "${sizes[@]}"; do
  sluice_load fsync "$size"
  sluice_load relaxed "$size"
done
fsync_probe end
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$run/results/machine.txt"

# --- the table ---------------------------------------------------------------------------------
# One row: scenario, size, and the numbers of result file $3, with ratios against file $4.
row() {
  local scenario=$1 size=$2 file=$3 nats=$4
  jq -r --arg s "$scenario" --arg size "$size" --slurpfile n "$nats" '
    def ms: . / 10 | floor / 100;
    [$s, $size, (.msgs_per_sec | floor), (.mb_per_sec * 100 | floor / 100),
     (.latency_us.p50 | ms), (.latency_us.p99 | ms), (.latency_us.p999 | ms),
     (if $s == "NATS JetStream R3" then "1.00" else (.msgs_per_sec / $n[0].msgs_per_sec * 100 | floor / 100 | tostring) end),
     (.latency_us.p99 / $n[0].latency_us.p99 * 100 | floor / 100)] | @tsv' "$file"
}
fsync_p99() { jq -r '.latency_us.p99' "$run/results/fsync-$1.json"; }
{
  printf 'scenario\tsize B\tmsgs/s\tMB/s\tp50 ms\tp99 ms\tp999 ms\tx NATS msgs/s\tx NATS p99\n'
  for size in "${sizes[@]}"; do
    nats="$run/results/nats-$size.json"
    row "NATS JetStream R3" "$size" "$nats" "$nats"
    row "Sluice RF3 fsync" "$size" "$run/results/sluice-fsync-$size.json" "$nats"
    row "Sluice RF3 flush ${flush_ms}ms" "$size" "$run/results/sluice-relaxed-$size.json" "$nats"
  done
  for when in start end; do
    jq -r --arg w "$when" '["disk append+fdatasync (" + $w + ")", "4096", (.msgs_per_sec | floor), (.mb_per_sec * 100 | floor / 100),
      (.latency_us.p50 / 10 | floor / 100), (.latency_us.p99 / 10 | floor / 100),
      (.latency_us.p999 / 10 | floor / 100), "", ""] | @tsv' "$run/results/fsync-$when.json"
  done
} >"$run/results/table.tsv"

# The targets of the comparison (docs/BENCHMARKS.md).
strict_fsync_p99=$(( $(fsync_p99 start) < $(fsync_p99 end) ? $(fsync_p99 start) : $(fsync_p99 end) ))
{
  for size in "${sizes[@]}"; do
    jq -r -n --arg size "$size" --argjson disk "$strict_fsync_p99" \
      --slurpfile n "$run/results/nats-$size.json" --slurpfile f "$run/results/sluice-fsync-$size.json" \
      --slurpfile r "$run/results/sluice-relaxed-$size.json" '
      def verdict: if . then "met" else "MISSED" end;
      ($f[0].msgs_per_sec / $n[0].msgs_per_sec) as $fx | ($r[0].msgs_per_sec / $n[0].msgs_per_sec) as $rx |
      "\($size) B: fsync msgs/s >= 3x NATS: \($fx * 100 | floor / 100)x, \($fx >= 3 | verdict); " +
      "fsync p99 <= 2x disk fdatasync p99 (\($disk / 1000) ms): \($f[0].latency_us.p99 / 1000) ms, \($f[0].latency_us.p99 <= 2 * $disk | verdict); " +
      "relaxed msgs/s >= 3x NATS: \($rx * 100 | floor / 100)x, \($rx >= 3 | verdict); " +
      "relaxed p99 <= NATS p99 (\($n[0].latency_us.p99 / 1000) ms): \($r[0].latency_us.p99 / 1000) ms, \($r[0].latency_us.p99 <= $n[0].latency_us.p99 | verdict)"'
  done
} >"$run/results/targets.txt"

echo
cat "$run/results/machine.txt"
echo "load: $producers producers per run, $duration per run; NATS $nats_in_flight in flight per producer;" \
  "Sluice topics $partitions partitions"
echo
column -t -s $'\t' "$run/results/table.tsv"
echo
cat "$run/results/targets.txt"
echo
echo "results, configs and logs: $run"
