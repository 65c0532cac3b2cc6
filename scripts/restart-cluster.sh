#!/usr/bin/env bash
# Rolling restart of the local cluster of scripts/start-cluster.sh: one broker at a time, stop it
# with SIGTERM (it first hands the leadership of its partitions, coordinators and the controller
# to caught-up replicas: docs/OPERATIONS.md, "Rolling restarts"), start it again, and wait until
# the cluster is whole before the next: every broker live and running all its replicas, every
# partition led, and no under-replicated partition. Prints each broker's stop and catch-up times
# and the total. Clients keep producing and consuming throughout.
#
# Environment (as start-cluster.sh, which this uses to start each broker again):
#   SLUICE_DATA_DIR, SLUICE_BIN_DIR, SLUICE_CONFIG_DIR
#   SLUICE_RESTART_TIMEOUT  seconds each broker may take to stop, and then to catch up (default 120)
#   SLUICE_RESTART_SETTLE   seconds to wait after a broker caught up, before the next (default 0);
#                           leadership goes back to a restarted broker a few seconds after it
#                           returns (rebalancing), which a settle lets finish first
#   SLUICE_RESTART_NODES    the nodes to restart, in order (default "1 2 3")
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${SLUICE_DATA_DIR:-$root/data}"
timeout_s="${SLUICE_RESTART_TIMEOUT:-120}"
settle_s="${SLUICE_RESTART_SETTLE:-0}"
read -r -a nodes <<<"${SLUICE_RESTART_NODES:-1 2 3}"
configs="${SLUICE_CONFIG_DIR:-$root/cluster-configs}"

die() { echo "restart-cluster: $*" >&2; exit 1; }

[ -d "$data" ] || die "no cluster under $data (start it with scripts/start-cluster.sh)"
data="$(cd "$data" && pwd)"
if [ -n "${SLUICE_BIN_DIR:-}" ]; then
  bin="$(cd "$SLUICE_BIN_DIR" 2>/dev/null && pwd)" || die "SLUICE_BIN_DIR=$SLUICE_BIN_DIR is not a directory"
else
  target="$(cd "$root" && cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
  bin="$target/release"
fi
[ -x "$bin/sluice" ] || die "$bin/sluice is missing (set SLUICE_BIN_DIR, or run start-cluster.sh first)"
bootstrap="$(grep -o 'client_addr *= *"[^"]*"' "$configs/node1.toml" | cut -d'"' -f2 | paste -sd, -)"

now_ms() { date +%s%3N; }

# Whether the cluster is whole: every broker live, not stopping, running every replica assigned
# to it and reporting no under-replicated partition, and every partition led.
whole() {
  local status brokers
  status="$("$bin/sluice" --bootstrap "$bootstrap" cluster status --output json 2>/dev/null)" || return 1
  brokers="$(grep -o '"node_id"' <<<"$status" | wc -l)"
  [ "$brokers" -ge "${#nodes[@]}" ] || return 1
  [ "$(grep -o '"live":true' <<<"$status" | wc -l)" -eq "$brokers" ] || return 1
  [ "$(grep -o '"offline_replicas":0[,}]' <<<"$status" | wc -l)" -eq "$brokers" ] || return 1
  # (Brokers from before under-replication was reported do not say it.)
  if grep -q '"under_replicated"' <<<"$status"; then
    [ "$(grep -o '"under_replicated":0[,}]' <<<"$status" | wc -l)" -eq "$brokers" ] || return 1
  fi
  grep -q '"stopping":true' <<<"$status" && return 1
  grep -q '"leaderless_partitions":0[,}]' <<<"$status"
}

# Waits for `whole`, at most the timeout; says how long it took, in ms.
wait_whole() {
  local start deadline
  start="$(now_ms)"
  deadline=$((SECONDS + timeout_s))
  until whole; do
    [ "$SECONDS" -lt "$deadline" ] || die "the cluster did not catch up within ${timeout_s}s; see $data/node*.log"
    sleep 0.2
  done
  echo $(($(now_ms) - start))
}

echo "restart-cluster: waiting for the cluster to be whole before the first restart"
wait_whole >/dev/null
total_start="$(now_ms)"
for n in "${nodes[@]}"; do
  pidfile="$data/node$n.pid"
  [ -f "$pidfile" ] || die "node $n is not running under $data (no $pidfile)"
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || die "node $n (pid $pid) is not running"
  stop_start="$(now_ms)"
  kill -TERM "$pid"
  deadline=$((SECONDS + timeout_s))
  # Until it is gone or a zombie (exited, not yet reaped).
  while [ "$(sed 's/^.*) \(.\).*$/\1/' "/proc/$pid/stat" 2>/dev/null || echo Z)" != Z ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "node $n (pid $pid) did not stop within ${timeout_s}s"
    sleep 0.02
  done
  stopped_ms=$(($(now_ms) - stop_start))
  rm -f "$pidfile"
  SLUICE_DATA_DIR="$data" "$root/scripts/start-cluster.sh" >/dev/null
  caught_up_ms="$(wait_whole)"
  echo "node $n: stopped in ${stopped_ms} ms; back and caught up $((caught_up_ms)) ms after its start"
  [ "$settle_s" = 0 ] || sleep "$settle_s"
done
echo "rolling restart of nodes ${nodes[*]} done in $((($(now_ms) - total_start) / 1000)) s"
