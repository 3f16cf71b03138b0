#!/usr/bin/env bash
# Log ingestion (issue #15), side by side in one run on this host: 10 chatty containers of the
# demo image (`hello -lines N`: N numbered ~100-byte lines as fast as it can write them, then
# a `lines: done N` marker)
#  * under Docker's own json-file driver (`docker run`), done when every container's last line
#    is in its json-file log on disk;
#  * as one Berth RunTask of 10 tasks with the awslogs driver (the agent follows each
#    container's output and ships it to the server's log store), done when every stream's last
#    event is the marker (GetLogEvents, boto3); then, outside the timed window, every stream
#    is read from its head and each numbered line missing, duplicated or out of order is
#    reported.
# Each is timed from the start request to done; prints lines/s, the ratio, and the CPU seconds
# dockerd, the agent and the server spent meanwhile (from /proc), alternating REPS times.
#
# Usage: bench/logs.sh [REPS] [--lines N] [--containers N]
#   BERTH_BIN=path  use this berth binary (default: build target/release/berth)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
shift || true
IMAGE=berth-demo:latest
docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "no image $IMAGE: run scripts/build-demo-image.sh" >&2; exit 1; }
python3 -c 'import boto3' 2>/dev/null || { echo "python3 with boto3 is needed" >&2; exit 1; }
if [[ -n ${BERTH_BIN:-} ]]; then
  BERTH=$BERTH_BIN
else
  cargo build --release -q -p berth
  BERTH=${CARGO_TARGET_DIR:-target}/release/berth
fi

WORK=$(mktemp -d)
RUN_ID="logbench-$$-$(date +%s)"
PIDS=()
INSTANCE=""
cleanup() {
  local rc=$?
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  local left=()
  [[ -n $INSTANCE ]] && mapfile -t left < <(docker ps -aq --filter "label=berth.container-instance-arn=$INSTANCE")
  mapfile -t -O "${#left[@]}" left < <(docker ps -aq --filter "label=berth.bench=$RUN_ID")
  [[ ${#left[@]} -gt 0 ]] && docker rm -f "${left[@]}" >/dev/null
  if [[ $rc -ne 0 ]]; then
    echo "--- server log (tail) ---" >&2; tail -n 20 "$WORK/server.err" >&2 || true
    echo "--- agent log (tail) ---" >&2; tail -n 40 "$WORK/agent.err" >&2 || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_line() { # file pattern what
  for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "$3 did not start:" >&2; cat "${1%.out}.err" >&2; return 1
}

BERTH_LOG=warn "$BERTH" server --data-dir "$WORK/server" --listen 127.0.0.1:0 \
  >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!; PIDS+=("$SERVER_PID")
wait_line "$WORK/server.out" "^listening on " "berth server"
ENDPOINT="http://$(sed -n 's/^listening on //p' "$WORK/server.out")"
export AWS_SHARED_CREDENTIALS_FILE="$WORK/server/credentials" AWS_CONFIG_FILE="$WORK/server/config"
BERTH_LOG=warn "$BERTH" agent --server "$ENDPOINT" --data-dir "$WORK/agent" --memory 4096 \
  >"$WORK/agent.out" 2>"$WORK/agent.err" &
AGENT_PID=$!; PIDS+=("$AGENT_PID")
wait_line "$WORK/agent.out" "^registered " "berth agent"
INSTANCE=$(sed -n 's/^registered //p' "$WORK/agent.out")
echo "berth server (pid $SERVER_PID), agent (pid $AGENT_PID), docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

python3 bench/logs.py --endpoint "$ENDPOINT" --run-id "$RUN_ID" --reps "$REPS" --image "$IMAGE" \
  --server-pid "$SERVER_PID" --agent-pid "$AGENT_PID" "$@" &
PIDS+=("$!")
wait "$!"
