#!/usr/bin/env bash
# Sluice against NATS JetStream on this machine, in one run: the same produce load (message
# size, producers, messages in flight per producer, duration) against
#   - a 3-node NATS JetStream cluster on loopback (Debian's nats-server), one replicas-3
#     file-storage stream, published to by scripts/nats-bench (async-nats);
#   - the 3-node Sluice cluster of scripts/start-cluster.sh, an RF-3 topic that fsyncs before
#     every acknowledgement (the default) and one with --flush-interval-ms, with
#     `sluice bench produce`;
# plus the disk's own append+fdatasync latency (before and after the loads), and prints one
# table with every system's numbers at each in-flight bound and their ratios to NATS's.
# docs/BENCHMARKS.md explains the choices and reads a run's results.
#
# Needs: root for apt-get if nats-server or jq is missing; cargo; Linux /proc. Ports: NATS
# 14221-14223 (clients) and 16221-16223 (routes); Sluice those of cluster-configs/.
#
# Environment:
#   BENCH_DURATION          length of each load run, e.g. 30s (default 20s)
#   BENCH_PRODUCERS         concurrent producers in every run (default 4)
#   BENCH_SIZES             message sizes in bytes (default "100 1024")
#   BENCH_IN_FLIGHT         bounds on unacknowledged messages per producer, one set of runs
#                           each, the same for both systems (default "256 1024 4096")
#   BENCH_PARTITIONS        partition counts of the Sluice topics, one set of Sluice runs each
#                           (default "1 3": 1 is one Raft group, as a NATS stream is)
#   BENCH_FLUSH_INTERVAL_MS the relaxed Sluice topic's --flush-interval-ms (default 100)
#   BENCH_ACKS              acknowledgement levels of the fsync topic's runs (default "all"; e.g.
#                           "all leader none": one run each, `sluice bench produce --acks`;
#                           docs/DURABILITY.md says what each promises)
#   BENCH_LINGER_MS         the Sluice producers' --linger-ms (default 0: the NATS client does
#                           not linger either; docs/BENCHMARKS.md shows what 5, the SDK's
#                           default, costs under a bound on messages in flight)
#   BENCH_FSYNC_COUNT       append+fdatasync calls per disk probe (default 2000)
#   BENCH_FSYNC_DELAY_US    emulate a slower disk: every fsync and fdatasync of the brokers and
#                           the disk probes returns this many microseconds late (default 0: off;
#                           the failure-injection suite's preload library, jepsen/fsync-log).
#                           nats-server makes its system calls without libc and is not slowed,
#                           so the NATS rows of such a run compare nothing
#   BENCH_DIR               parent of this run's directory (default data/ at the repository
#                           root, git-ignored); it must be on the disk you mean to measure
#   BENCH_MIN_FREE_GB       free space the data directory's disk must have at the start
#                           (default 25): each run writes up to ~10 GB (three replicas), deleted
#                           (topic or stream deleted) before the next run starts
#   BENCH_KEEP_DATA         1 keeps the brokers' data directories and the copied binaries
#                           (default: deleted; logs, configs and JSON results are always kept)
#   SLUICE_BIN_DIR          prebuilt sluice-broker and sluice (default: cargo build --release)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration="${BENCH_DURATION:-20s}"
producers="${BENCH_PRODUCERS:-4}"
read -r -a sizes <<<"${BENCH_SIZES:-100 1024}"
read -r -a partition_counts <<<"${BENCH_PARTITIONS:-1 3}"
read -r -a in_flights <<<"${BENCH_IN_FLIGHT:-256 1024 4096}"
read -r -a ack_levels <<<"${BENCH_ACKS:-all}"
flush_ms="${BENCH_FLUSH_INTERVAL_MS:-100}"
linger_ms="${BENCH_LINGER_MS:-0}"
fsync_count="${BENCH_FSYNC_COUNT:-2000}"
fsync_delay_us="${BENCH_FSYNC_DELAY_US:-0}"
nats_nodes=(1 2 3)

die() { echo "bench-vs-nats: $*" >&2; exit 1; }
say() { echo "bench-vs-nats: $*" >&2; }

[[ "$duration" =~ ^[0-9]+(ms|s|m)?$ ]] || die "BENCH_DURATION=$duration is not a duration such as 30s"
[[ "$fsync_delay_us" =~ ^[0-9]+$ ]] || die "BENCH_FSYNC_DELAY_US=$fsync_delay_us is not a number of microseconds"
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
min_free_gb="${BENCH_MIN_FREE_GB:-25}"
free_gb=$(( $(df -Pk "$base" | awk 'NR == 2 {print $4}') / 1024 / 1024 ))
[ "$free_gb" -ge "$min_free_gb" ] ||
  die "only $free_gb GB free under $base; the runs need $min_free_gb GB (BENCH_MIN_FREE_GB)"
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
if [ "$fsync_delay_us" != 0 ]; then
  say "building the fsync delay library (jepsen/fsync-log): every fsync $fsync_delay_us us late"
  (cd "$root" && cargo build --release --locked --quiet -p sluice-jepsen-fsync-log) || die "its build failed"
  cp "$target/release/libsluice_jepsen_fsync_log.so" "$bin/"
  # Everything started from here on: the brokers, the probes, the clients (which do not fsync).
  export LD_PRELOAD="$bin/libsluice_jepsen_fsync_log.so" SLUICE_JEPSEN_FSYNC_DELAY_US="$fsync_delay_us"
fi

# --- clean-up: only the processes this run started, always ---------------------------------
nats_pids=()
load_pids=()
sluice_started=0
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # A load run or probe still going (interrupted): `timeout` passes the TERM on to its command.
  if [ ${#load_pids[@]} -gt 0 ]; then
    kill -TERM "${load_pids[@]}" 2>/dev/null || true
    wait "${load_pids[@]}" 2>/dev/null || true
  fi
  stop_nats
  [ "$sluice_started" = 1 ] && stop_sluice
  sluice_started=0
  if [ "${BENCH_KEEP_DATA:-0}" != 1 ]; then
    rm -rf "${run:?}/nats/n"[0-9]/ "${run:?}/sluice/node"[0-9]/ "${run:?}/bin"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops this run's brokers: stop-cluster.sh (its output to the terminal: this must work with a
# full disk too), and SIGKILL for any it could not stop.
stop_sluice() {
  local pidfile pid
  SLUICE_DATA_DIR="$run/sluice" "$root/scripts/stop-cluster.sh" >&2 || true
  for pidfile in "$run/sluice/"node*.pid; do
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--config $run/sluice/"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

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

# The 1-minute load average: other work on a shared machine shows up in the results.
loadavg() { cut -d' ' -f1 /proc/loadavg; }

# Whether something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- the disk ----------------------------------------------------------------------------------
# The disk alone, nothing else of this run writing: before and after the loads.
fsync_probe() {
  say "measuring append+fdatasync ($fsync_count x 4 KiB) in $run ($1)"
  timeout 300 "$bin/nats-bench" fsync --dir "$run" --count "$fsync_count" --block-bytes 4096 --output json \
    >"$run/results/fsync-$1.json" || die "the fdatasync probe failed"
}

# Runs "$@" (a load run named $1 after shifting) while a light probe (one 4 KiB append+fdatasync
# every 10 ms) measures what an fdatasync costs on the same disk meanwhile. Both run in the
# background and are waited for, so that Ctrl-C interrupts the wait at once and the clean-up
# stops them (background commands of a script ignore SIGINT themselves).
with_disk_probe() {
  local name=$1 status=0
  shift
  "$bin/nats-bench" fsync --dir "$run" --count 1000000 --block-bytes 4096 --interval 10ms \
    --max-duration "$duration" --output json >"$run/results/$name.disk.json" 2>&1 &
  load_pids=($!)
  "$@" &
  load_pids+=($!)
  wait "${load_pids[1]}" || status=$?
  wait "${load_pids[0]}" || die "the fdatasync probe beside $name failed: see $run/results/$name.disk.json"
  load_pids=()
  return "$status"
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

# One NATS run: size $1, in flight per producer $2, on a stream of its own.
nats_load() {
  local size=$1 in_flight=$2 name="nats-$1-$2"
  say "NATS: $size B messages, $producers producers x $in_flight in flight, $duration"
  loadavg >"$run/results/$name.load"
  with_disk_probe "$name" timeout "$run_timeout" "$bin/nats-bench" produce \
    --servers nats://127.0.0.1:14221,nats://127.0.0.1:14222,nats://127.0.0.1:14223 \
    --stream "bench-$size-$in_flight" --create-stream --replicas 3 --message-bytes "$size" \
    --producers "$producers" --max-in-flight "$in_flight" --duration "$duration" --output json --delete-stream \
    >"$run/results/$name.json" 2>"$run/results/$name.log" || die "the NATS run failed: see $run/results/$name.log"
}

# --- Sluice ------------------------------------------------------------------------------------
start_sluice() {
  sluice_started=1
  SLUICE_DATA_DIR="$run/sluice" SLUICE_BIN_DIR="$bin" "$root/scripts/start-cluster.sh" >"$run/start-sluice.log" 2>&1 \
    || { cat "$run/start-sluice.log" >&2; die "the Sluice cluster did not start"; }
  say "Sluice cluster running (data in $run/sluice)"
}

# One Sluice run: flush policy $1 (fsync or relaxed), partitions $2, size $3, in flight per
# producer $4, acknowledgement level $5 (default all), on a topic of its own.
sluice_load() {
  local policy=$1 partitions=$2 size=$3 in_flight=$4 acks=${5:-all} flush=()
  local name="sluice-$1$(acks_suffix "$acks")-p$2-$3-$4" topic="bench-$1-p$2-$3-$4-$acks"
  [ "$policy" = relaxed ] && flush=(--flush-interval-ms "$flush_ms")
  timeout 90 "$bin/sluice" topic create "$topic" --partitions "$partitions" --replication-factor 3 \
    "${flush[@]}" >"$run/results/$name.create.log" 2>&1 || die "cannot create the topic: see $run/results/$name.create.log"
  say "Sluice ($policy, $partitions partitions): $size B messages, $producers producers x $in_flight in flight, $duration"
  loadavg >"$run/results/$name.load"
  with_disk_probe "$name" timeout "$run_timeout" "$bin/sluice" bench produce --topic "$topic" --message-bytes "$size" \
    --producers "$producers" --max-in-flight "$in_flight" --linger-ms "$linger_ms" --duration "$duration" \
    --acks "$acks" --output json >"$run/results/$name.json" 2>"$run/results/$name.log" ||
    die "the Sluice run failed: see $run/results/$name.log"
  # Its data goes before the next run writes more.
  timeout 90 "$bin/sluice" topic delete "$topic" >>"$run/results/$name.create.log" 2>&1 ||
    die "cannot delete topic $topic: see $run/results/$name.create.log"
}

# The result-name suffix of acknowledgement level $1: none for all (the default's old names).
acks_suffix() { [ "$1" = all ] || echo "-acks-$1"; }

# --- the run -----------------------------------------------------------------------------------
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
  echo "disk: $(df -h "$run" | awk 'NR == 2 {print $1 " (" $2 ", " $5 " used)"}')"
  [ "$fsync_delay_us" = 0 ] || echo "emulated disk: every fsync ${fsync_delay_us} us late (BENCH_FSYNC_DELAY_US)"
  echo "nats-server: $(nats-server --version)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$run/results/machine.txt"

fsync_probe start
start_nats
for in_flight in "${in_flights[@]}"; do
  for size in "${sizes[@]}"; do nats_load "$size" "$in_flight"; done
done
stop_nats
start_sluice
for in_flight in "${in_flights[@]}"; do
  for size in "${sizes[@]}"; do
    for partitions in "${partition_counts[@]}"; do
      for acks in "${ack_levels[@]}"; do sluice_load fsync "$partitions" "$size" "$in_flight" "$acks"; done
      sluice_load relaxed "$partitions" "$size" "$in_flight"
    done
  done
done
stop_sluice 2>"$run/stop-sluice.log"
sluice_started=0
fsync_probe end
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$run/results/machine.txt"

# --- the table ---------------------------------------------------------------------------------
# One row: scenario $1, size $2, in flight $3, the numbers of result $4 (with .load and
# .disk.json beside it), and its ratios to NATS result $5.
row() {
  local scenario=$1 size=$2 in_flight=$3 file=$4 nats=$5
  jq -r --arg s "$scenario" --arg size "$size" --arg m "$in_flight" --arg load "$(cat "${file%.json}.load")" \
    --slurpfile n "$nats" --slurpfile d "${file%.json}.disk.json" '
    def ms: . / 10 | floor / 100;
    def x: . * 100 | floor / 100;
    [$s, $size, $m, (.msgs_per_sec | floor), (.mb_per_sec | x),
     (.latency_us.p50 | ms), (.latency_us.p99 | ms), (.latency_us.p999 | ms),
     (.msgs_per_sec / $n[0].msgs_per_sec | x), (.latency_us.p99 / $n[0].latency_us.p99 | x),
     "\($d[0].latency_us.p50 | ms) / \($d[0].latency_us.p99 | ms)", $load] | @tsv' "$file"
}
{
  printf 'scenario\tsize B\tin flight\tmsgs/s\tMB/s\tp50 ms\tp99 ms\tp999 ms\tx NATS msgs/s\tx NATS p99\tdisk p50/p99 ms\tload\n'
  for in_flight in "${in_flights[@]}"; do
    for size in "${sizes[@]}"; do
      nats="$run/results/nats-$size-$in_flight.json"
      row "NATS R3 stream" "$size" "$in_flight" "$nats" "$nats"
      for partitions in "${partition_counts[@]}"; do
        for acks in "${ack_levels[@]}"; do
          label="Sluice fsync, ${partitions}p"
          [ "$acks" = all ] || label="Sluice fsync acks $acks, ${partitions}p"
          row "$label" "$size" "$in_flight" \
            "$run/results/sluice-fsync$(acks_suffix "$acks")-p$partitions-$size-$in_flight.json" "$nats"
        done
        row "Sluice flush ${flush_ms}ms, ${partitions}p" "$size" "$in_flight" \
          "$run/results/sluice-relaxed-p$partitions-$size-$in_flight.json" "$nats"
      done
    done
  done
  for when in start end; do
    jq -r --arg w "$when" '["disk append+fdatasync (" + $w + ")", "4096", "1", (.msgs_per_sec | floor),
      (.mb_per_sec * 100 | floor / 100), (.latency_us.p50 / 10 | floor / 100), (.latency_us.p99 / 10 | floor / 100),
      (.latency_us.p999 / 10 | floor / 100), "", "", "", ""] | @tsv' "$run/results/fsync-$when.json"
  done
} >"$run/results/table.tsv"

# The targets (docs/BENCHMARKS.md), per size and in-flight bound. The fsync policy's p99 is held
# against two disk p99s: the probe's beside that very run (the disk as busy as the run made it),
# and the lower of the idle probes' (the strictest bound).
fsync_p99() { jq -r '.latency_us.p99' "$run/results/fsync-$1.json"; }
idle_p99=$(( $(fsync_p99 start) < $(fsync_p99 end) ? $(fsync_p99 start) : $(fsync_p99 end) ))
{
  for in_flight in "${in_flights[@]}"; do
    for size in "${sizes[@]}"; do
      for partitions in "${partition_counts[@]}"; do
        fsync="$run/results/sluice-fsync-p$partitions-$size-$in_flight"
        relaxed="$run/results/sluice-relaxed-p$partitions-$size-$in_flight"
        jq -r -n --arg head "$size B, $in_flight in flight, $partitions partition(s)" --argjson idle "$idle_p99" \
          --slurpfile n "$run/results/nats-$size-$in_flight.json" --slurpfile f "$fsync.json" \
          --slurpfile d "$fsync.disk.json" --slurpfile r "$relaxed.json" '
          def verdict: if . then "met" else "MISSED" end;
          def x: . * 100 | floor / 100;
          def ms: . / 10 | floor / 100;
          ($f[0].msgs_per_sec / $n[0].msgs_per_sec) as $fx | ($r[0].msgs_per_sec / $n[0].msgs_per_sec) as $rx |
          $f[0].latency_us.p99 as $fp | $d[0].latency_us.p99 as $busy |
          "\($head):\n" +
          "  fsync:   \($fx | x)x NATS msgs/s (>= 3x: \($fx >= 3 | verdict)); p99 \($fp | ms) ms, " +
          "\($fp / $busy | x)x the disk p99 beside it (\($busy | ms) ms; <= 2x: \($fp <= 2 * $busy | verdict)), " +
          "\($fp / $idle | x)x the idle disk p99 (\($idle | ms) ms; <= 2x: \($fp <= 2 * $idle | verdict))\n" +
          "  relaxed: \($rx | x)x NATS msgs/s (>= 3x: \($rx >= 3 | verdict)); p99 \($r[0].latency_us.p99 | ms) ms vs NATS " +
          "\($n[0].latency_us.p99 | ms) ms (no worse: \($r[0].latency_us.p99 <= $n[0].latency_us.p99 | verdict))"'
      done
    done
  done
} >"$run/results/targets.txt"

echo
cat "$run/results/machine.txt"
echo "load: $producers producers per run, $duration per run; in flight = unacknowledged messages per producer;" \
  "Sluice linger $linger_ms ms; Np = a Sluice topic of N partitions; load = 1-minute load average as the run started"
echo
column -t -s $'\t' "$run/results/table.tsv"
echo
cat "$run/results/targets.txt"
echo
echo "results, configs and logs: $run"
