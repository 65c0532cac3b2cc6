#!/usr/bin/env bash
# Starts the local three-node cluster of cluster-configs/ in the background and waits until it
# serves clients. Stop it with scripts/stop-cluster.sh. Works from any directory.
#
# Environment:
#   SLUICE_DATA_DIR       where data, logs, PID files and the brokers' configs go (default: ./data
#                         at the repository root); stop-cluster.sh needs the same value
#   SLUICE_BIN_DIR        a directory holding prebuilt sluice-broker and sluice binaries; unset,
#                         the release binaries are built (cargo build --release) if needed, after
#                         installing what the build needs if it is missing (install-deps.sh)
#   SLUICE_CONFIG_DIR     where node1.toml … node3.toml are (default: cluster-configs/ at the
#                         repository root); another directory runs the cluster on other ports
#   SLUICE_START_TIMEOUT  seconds to wait for the cluster to serve (default 60)
#   RUST_LOG              the brokers' log filter (unset: the broker's default, README.md);
#                         logs are plain text (NO_COLOR=1)
#
# Layout under the data directory, per node N of cluster-configs/nodeN.toml:
#   nodeN.toml  the config, with data_dir rewritten to the absolute path of nodeN/
#   nodeN/      the broker's data
#   nodeN.log   its stdout and stderr
#   nodeN.pid   its process id, while this script's broker runs
# A node whose PID file names a live broker is left alone, so running this twice starts no
# second cluster (and running it after one broker died starts just that one again).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
configs="${SLUICE_CONFIG_DIR:-$root/cluster-configs}"
[ -d "$configs" ] || { echo "start-cluster: SLUICE_CONFIG_DIR=$configs is not a directory" >&2; exit 1; }
data="${SLUICE_DATA_DIR:-$root/data}"
timeout_s="${SLUICE_START_TIMEOUT:-60}"
nodes=(1 2 3)

die() { echo "start-cluster: $*" >&2; exit 1; }

mkdir -p "$data" || die "cannot create the data directory $data"
data="$(cd "$data" && pwd)"
case "$data" in *\"* | *\\*) die "the data directory path $data contains a quote or a backslash" ;; esac

# The binaries: prebuilt, or built in release mode (cargo does nothing when they are current).
if [ -n "${SLUICE_BIN_DIR:-}" ]; then
  bin="$(cd "$SLUICE_BIN_DIR" 2>/dev/null && pwd)" || die "SLUICE_BIN_DIR=$SLUICE_BIN_DIR is not a directory"
else
  command -v cargo >/dev/null || die "cargo not found: install Rust, or set SLUICE_BIN_DIR to prebuilt binaries"
  "$root/scripts/install-deps.sh" --build-only || die "the build dependencies could not be installed"
  echo "building the release binaries (cargo build --release --locked -p sluice-broker -p sluice-cli)"
  (cd "$root" && cargo build --release --locked -p sluice-broker -p sluice-cli) || die "the build failed"
  target="$(cd "$root" && cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
  bin="$target/release"
fi
for b in sluice-broker sluice; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing or not executable"
done

# Whether PID $1 is a running (not zombie) sluice-broker started with config $2.
broker_alive() {
  local pid=$1 config=$2 state
  [ -r "/proc/$pid/stat" ] || return 1
  state="$(sed 's/^.*) \(.\).*$/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [ "$state" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "sluice-broker --config $config"
}

# The value of key $2 in the [[peers]] entry of node $1 of config $3.
peer_addr() {
  awk -v self="$1" -v key="$2" '
    /^\[\[peers\]\]/ { in_peer = 1; id = ""; next }
    /^\[/ { in_peer = 0 }
    in_peer && $1 == "node_id" { id = $3 }
    in_peer && id == self && $1 == key { gsub(/"/, "", $3); print $3; exit }
  ' "$3"
}

# Whether something accepts connections on host:port $1.
listening() {
  (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

# First which nodes need starting, and whether their ports are free: nothing starts unless
# every one of them can.
to_start=()
running=()
for n in "${nodes[@]}"; do
  source_config="$configs/node$n.toml"
  [ -f "$source_config" ] || die "missing $source_config"
  pidfile="$data/node$n.pid"
  if [ -f "$pidfile" ] && broker_alive "$(cat "$pidfile")" "$data/node$n.toml"; then
    running+=("$n")
    continue
  fi
  rm -f "$pidfile"
  for key in client_addr raft_addr; do
    addr="$(peer_addr "$n" "$key" "$source_config")"
    [ -n "$addr" ] || die "$source_config has no $key for node $n"
    if listening "$addr"; then
      die "node $n's $key $addr is already in use by another process (another cluster, or sluice-broker --dev?)"
    fi
  done
  metrics="$(awk '$1 == "metrics_listen" { gsub(/"/, "", $3); print $3; exit }' "$source_config")"
  if [ -n "$metrics" ] && listening "$metrics"; then
    die "node $n's metrics_listen $metrics is already in use by another process"
  fi
  to_start+=("$n")
done

# setsid: a broker leaves this script's session, so a Ctrl-C here does not reach it.
launcher=()
command -v setsid >/dev/null && launcher=(setsid)
started=()
for n in "${to_start[@]}"; do
  config="$data/node$n.toml"
  LINE="data_dir = \"$data/node$n\"" awk '
    /^data_dir[ \t]*=/ { print ENVIRON["LINE"]; found = 1; next }
    { print }
    END { if (!found) exit 1 }
  ' "$configs/node$n.toml" >"$config" || die "$configs/node$n.toml has no data_dir line to rewrite"
  echo "==== start-cluster: starting node $n at $(date -u +%Y-%m-%dT%H:%M:%SZ) ====" >>"$data/node$n.log"
  NO_COLOR=1 "${launcher[@]}" "$bin/sluice-broker" --config "$config" \
    </dev/null >>"$data/node$n.log" 2>&1 &
  echo $! >"$data/node$n.pid"
  started+=("$n")
done

bootstrap="$(grep -o 'client_addr *= *"[^"]*"' "$configs/node1.toml" | cut -d'"' -f2 | paste -sd, -)"

if [ "${#started[@]}" -eq 0 ]; then
  echo "the cluster is already running under $data (nodes ${running[*]}); nothing started"
else
  echo "started node(s) ${started[*]} under $data; waiting up to ${timeout_s}s for the cluster to serve"
fi

# Ready: every broker is live in the controller's view ("live":true three times).
deadline=$((SECONDS + timeout_s))
while :; do
  status="$("$bin/sluice" --bootstrap "$bootstrap" cluster status --output json 2>&1)" || true
  [ "$(grep -o '"live":true' <<<"$status" | wc -l)" -eq "${#nodes[@]}" ] && break
  dead=()
  for n in "${started[@]}"; do
    broker_alive "$(cat "$data/node$n.pid")" "$data/node$n.toml" || dead+=("$n")
  done
  if [ "${#dead[@]}" -gt 0 ] || [ "$SECONDS" -ge "$deadline" ]; then
    echo "start-cluster: the cluster did not come up (exited: ${dead[*]:-none}); last status: $status" >&2
    for n in "${nodes[@]}"; do
      echo "----- $data/node$n.log (last 20 lines) -----" >&2
      tail -n 20 "$data/node$n.log" >&2 2>/dev/null || true
    done
    echo "start-cluster: stopping the brokers this run started" >&2
    for n in "${started[@]}"; do
      pid="$(cat "$data/node$n.pid")"
      broker_alive "$pid" "$data/node$n.toml" && kill -TERM "$pid" 2>/dev/null
      rm -f "$data/node$n.pid"
    done
    exit 1
  fi
  sleep 0.5
done

cat <<EOF
Sluice cluster serving on $bootstrap
  data, logs and PID files: $data
Connect with the sluice CLI (--bootstrap or SLUICE_BOOTSTRAP; unset, it dials the addresses
of cluster-configs/):
  $bin/sluice cluster status
  $bin/sluice topic create orders --partitions 3 --replication-factor 3
  echo "hello" | $bin/sluice produce orders
  $bin/sluice consume orders
SDK programs: SLUICE_BOOTSTRAP=$bootstrap (the default of ClientConfig::from_env)
Stop it with: ${SLUICE_DATA_DIR:+SLUICE_DATA_DIR=$data }$root/scripts/stop-cluster.sh
EOF
