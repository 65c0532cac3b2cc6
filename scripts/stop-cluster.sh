#!/usr/bin/env bash
# Stops the brokers scripts/start-cluster.sh started: exactly the processes its PID files name
# (checked to be that broker, so a reused PID is never signalled). SIGTERM first, so each
# broker stops gracefully; SIGKILL whatever is still running after the bound. Removes the PID
# files. Works from any directory.
#
# Environment:
#   SLUICE_DATA_DIR      the data directory start-cluster.sh used (default: ./data at the
#                        repository root)
#   SLUICE_STOP_TIMEOUT  seconds to wait after SIGTERM before SIGKILL (default 30)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${SLUICE_DATA_DIR:-$root/data}"
timeout_s="${SLUICE_STOP_TIMEOUT:-30}"

if [ ! -d "$data" ]; then
  echo "no cluster data directory at $data; nothing to stop"
  exit 0
fi
data="$(cd "$data" && pwd)"

# Whether PID $1 is a running (not zombie) sluice-broker started with config $2.
broker_alive() {
  local pid=$1 config=$2 state
  [ -r "/proc/$pid/stat" ] || return 1
  state="$(sed 's/^.*) \(.\).*$/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [ "$state" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "sluice-broker --config $config"
}

declare -A pids=()
shopt -s nullglob
for pidfile in "$data"/node*.pid; do
  name="$(basename "$pidfile" .pid)"
  pid="$(cat "$pidfile")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && broker_alive "$pid" "$data/$name.toml"; then
    kill -TERM "$pid" 2>/dev/null || true
    pids[$name]=$pid
    echo "stopping $name (pid $pid)"
  else
    echo "$name was not running (stale PID file)"
    rm -f "$pidfile"
  fi
done

if [ "${#pids[@]}" -eq 0 ]; then
  echo "no running brokers under $data"
  exit 0
fi

deadline=$((SECONDS + timeout_s))
while :; do
  left=()
  for name in "${!pids[@]}"; do
    broker_alive "${pids[$name]}" "$data/$name.toml" && left+=("$name")
  done
  [ "${#left[@]}" -eq 0 ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then
    for name in "${left[@]}"; do
      echo "$name (pid ${pids[$name]}) did not stop within ${timeout_s}s of SIGTERM; sending SIGKILL" >&2
      kill -KILL "${pids[$name]}" 2>/dev/null || true
    done
    sleep 1
    for name in "${left[@]}"; do
      if broker_alive "${pids[$name]}" "$data/$name.toml"; then
        echo "stop-cluster: $name (pid ${pids[$name]}) survived SIGKILL" >&2
        exit 1
      fi
    done
    break
  fi
  sleep 0.2
done

for name in "${!pids[@]}"; do
  rm -f "$data/$name.pid"
done
echo "stopped: $(printf '%s\n' "${!pids[@]}" | sort | paste -sd' ' -)"
