#!/usr/bin/env bash
# Task benchmark: Berth's RunTask -> RUNNING next to raw Docker create+start, same image, same
# machine, same run.
#
# Builds release binaries, starts `berth server` (temporary data dir, loopback, port 0) and
# `berth agent --memory 8192` against it, then runs berth-taskbench, which prints:
#   - RunTask -> RUNNING latency (N samples, DescribeTasks polled every 5 ms, each sample from
#     an empty instance) and raw Docker create -> start -> running of the same image with the
#     agent's configuration (16 MiB, 8080 on a dynamic host port, same labels), interleaved;
#     p50/p99/mean and the p50 ratio; a breakdown of Berth's time from the task's timestamps;
#   - 100 tasks to RUNNING (RunTask count=10 x 10) vs 100 raw containers, sequential and
#     8 at a time;
#   - agent and server RSS, idle.
# Needs Docker and the image berth-demo:latest (scripts/build-demo-image.sh).
# Everything it starts is stopped on exit, and every container it created is removed (the
# agent's carry berth.container-instance-arn=<arn>, the raw ones berth.bench=<run id>).
#
# Usage: bench/tasks.sh [samples (default 30) [more berth-taskbench flags, e.g. --poll-ms 1]]
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${1:-30}
shift || true
TARGET_DIR=${CARGO_TARGET_DIR:-target}

cargo build --release -q -p berth -p berth-bench
BERTH=$TARGET_DIR/release/berth
TASKBENCH=$TARGET_DIR/release/berth-taskbench

WORK=$(mktemp -d)
RUN_ID="taskbench-$$-$(date +%s)"
PIDS=()
INSTANCE=""
cleanup() {
  local rc=$?
  # Stop in reverse order: the bench, the agent (it leaves its tasks' containers running by
  # design), the server; then remove the containers by label.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ ${#PIDS[@]} -gt 0 ]]; then
    local labels=(--cleanup-label "berth.bench=$RUN_ID")
    [[ -n $INSTANCE ]] && labels+=(--cleanup-label "berth.container-instance-arn=$INSTANCE")
    "$TASKBENCH" "${labels[@]}" || echo "cleanup failed: containers labelled ${labels[*]} may be left" >&2
  fi
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
CREDS="$WORK/server/credentials"

AWS_SHARED_CREDENTIALS_FILE="$CREDS" BERTH_LOG=${BERTH_AGENT_LOG:-warn} "$BERTH" agent \
  --server "$ENDPOINT" --data-dir "$WORK/agent" --memory 8192 \
  >"$WORK/agent.out" 2>"$WORK/agent.err" &
AGENT_PID=$!; PIDS+=("$AGENT_PID")
wait_line "$WORK/agent.out" "^registered " "berth agent"
INSTANCE=$(sed -n 's/^registered //p' "$WORK/agent.out")

echo "berth server $ENDPOINT (pid $SERVER_PID), agent $INSTANCE (pid $AGENT_PID), docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'), $(nproc) CPUs"
# In the background and waited for, so that a signal runs the exit trap at once (bash defers
# traps while a foreground command runs); the trap stops it first.
"$TASKBENCH" --endpoint "$ENDPOINT" --credentials "$CREDS" --instance-arn "$INSTANCE" \
  --agent-pid "$AGENT_PID" --server-pid "$SERVER_PID" --run-id "$RUN_ID" --samples "$SAMPLES" "$@" &
PIDS+=("$!")
wait "$!"
