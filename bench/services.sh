#!/usr/bin/env bash
# Service benchmark: Berth's services next to Docker Swarm mode's, same image, same machine,
# same run.
#
# Builds the release binary, starts `berth server` (temporary data dir, loopback, port 0,
# default --service-settle-secs) and `berth agent --memory 4096` against it, puts the Docker
# Engine in swarm mode if it is not already (a single-node swarm on 127.0.0.1), tags
# berth-demo:latest as berth-demo:bench-v2, then runs bench/services.py, which prints, per
# repetition (Berth first on odd repetitions, Swarm first on even ones) and as medians:
#   - a service of 50 tasks: CreateService (boto3, desiredCount 50) until DescribeServices
#     shows one COMPLETED deployment and runningCount 50 (every task RUNNING and HEALTHY), vs
#     POST /services/create (50 replicas) until 50 containers of the service run and Docker
#     says healthy;
#   - a rolling update of a settled 20-task service to the second tag: UpdateService
#     (minimumHealthyPercent 100, maximumPercent 200) until one COMPLETED deployment of the
#     new revision with runningCount 20 and every old task STOPPED, vs POST
#     /services/{id}/update (parallelism 20, order start-first, delay 0: the same batch) until
#     20 containers of the new tag run healthy and no other container of the service runs;
#   - seconds and the ratio Berth/Swarm (target: Berth at most as slow as Swarm on both).
# Both sides are polled every 100 ms (DescribeServices and DescribeTasks; the Engine API's
# container list with label and health filters).
#
# Like for like: the same image; one container, 16 MiB hard limit (Swarm also reserves the
# 16 MiB, as ECS's placement does); 8080 on a dynamic host port of the default bridge (Swarm:
# PublishMode host without a published port, so no routing mesh); the same exec-form health
# check (/hello -check http://127.0.0.1:8080/health, every 5 s, timeout 2 s, 1 retry, no start
# period). Swarm is driven through the Engine API, as the docker CLI would, because
# `docker service create --health-cmd` only makes shell-form checks and the image has no shell;
# that also skips the CLI's registry digest lookup. Swarm's tasks turn RUNNING only once
# healthy, so its start-first update also stops old tasks only when new ones are healthy.
#
# Needs Docker (swarm mode off, or this node a manager), the image berth-demo:latest
# (scripts/build-demo-image.sh) and python3 with boto3. Takes a few minutes.
# On exit, and on failure: Berth's services are deleted (scaled to 0, then INACTIVE), Swarm's
# services labelled berth.bench=<run id> removed, and both waited for until their containers
# are gone; agent and server stopped; any container still labelled
# berth.container-instance-arn=<arn> or berth.bench=<run id> removed; the bench-v2 tag
# removed; the swarm left, and its docker_gwbridge network removed, if this script created them.
#
# Usage: bench/services.sh [repetitions (default 3) [more bench/services.py flags, e.g.
#        --verbose, --create-count 50, --update-count 20, --poll-ms 100]]
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
shift || true
TARGET_DIR=${CARGO_TARGET_DIR:-target}
IMAGE=berth-demo:latest
IMAGE_V2=berth-demo:bench-v2

docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "no image $IMAGE: run scripts/build-demo-image.sh" >&2; exit 1; }
python3 -c 'import boto3' 2>/dev/null || { echo "python3 with boto3 is needed" >&2; exit 1; }
case $(docker info --format '{{.Swarm.LocalNodeState}}/{{.Swarm.ControlAvailable}}') in
  inactive/*) SWARM_INIT=1 ;;
  active/true) SWARM_INIT=0 ;;
  *) echo "this Docker Engine is in a swarm but not a manager (or the swarm is not ready)" >&2; exit 1 ;;
esac
GWBRIDGE_BEFORE=$(docker network ls -q --filter name='^docker_gwbridge$')

cargo build --release -q -p berth
BERTH=$TARGET_DIR/release/berth

WORK=$(mktemp -d)
RUN_ID="svcbench-$$-$(date +%s)"
PIDS=()
INSTANCE=""
ENDPOINT=""
SWARM_UP=0
TAGGED=0
cleanup() {
  local rc=$?
  # The driver first; then the services of both (Berth's agent must still run to stop its
  # containers); then agent and server; then whatever container is left, by label.
  if [[ ${#PIDS[@]} -gt 2 ]]; then kill "${PIDS[2]}" 2>/dev/null || true; wait "${PIDS[2]}" 2>/dev/null || true; fi
  if [[ -n $ENDPOINT || $SWARM_UP -eq 1 ]]; then
    local args=(--run-id "$RUN_ID")
    [[ -n $INSTANCE ]] && args+=(--endpoint "$ENDPOINT" --instance-arn "$INSTANCE")
    AWS_SHARED_CREDENTIALS_FILE="$WORK/server/credentials" AWS_CONFIG_FILE="$WORK/server/config" \
      python3 bench/services.py cleanup "${args[@]}" || echo "service cleanup failed; removing containers by label" >&2
  fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  local left=()
  [[ -n $INSTANCE ]] && mapfile -t left < <(docker ps -aq --filter "label=berth.container-instance-arn=$INSTANCE")
  mapfile -t -O "${#left[@]}" left < <(docker ps -aq --filter "label=berth.bench=$RUN_ID")
  if [[ ${#left[@]} -gt 0 ]]; then
    echo "removing ${#left[@]} leftover containers" >&2
    docker rm -f "${left[@]}" >/dev/null || echo "cleanup failed: containers labelled $INSTANCE / $RUN_ID may be left" >&2
  fi
  [[ $TAGGED -eq 1 ]] && { docker rmi "$IMAGE_V2" >/dev/null || echo "cleanup failed: tag $IMAGE_V2 left" >&2; }
  if [[ $SWARM_INIT -eq 1 && $SWARM_UP -eq 1 ]]; then
    docker swarm leave --force >/dev/null || echo "cleanup failed: the engine is still in swarm mode" >&2
    if [[ -z $GWBRIDGE_BEFORE ]] && docker network inspect docker_gwbridge >/dev/null 2>&1; then
      docker network rm docker_gwbridge >/dev/null || echo "cleanup failed: network docker_gwbridge left" >&2
    fi
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

if [[ $SWARM_INIT -eq 1 ]]; then
  SWARM_UP=1 # set first: a half-done init is left too
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi
SWARM_UP=1
TAGGED=1
docker tag "$IMAGE" "$IMAGE_V2"

BERTH_LOG=warn "$BERTH" server --data-dir "$WORK/server" --listen 127.0.0.1:0 \
  >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!; PIDS+=("$SERVER_PID")
wait_line "$WORK/server.out" "^listening on " "berth server"
ENDPOINT="http://$(sed -n 's/^listening on //p' "$WORK/server.out")"
export AWS_SHARED_CREDENTIALS_FILE="$WORK/server/credentials" AWS_CONFIG_FILE="$WORK/server/config"

BERTH_LOG=${BERTH_AGENT_LOG:-warn} "$BERTH" agent \
  --server "$ENDPOINT" --data-dir "$WORK/agent" --memory 4096 \
  >"$WORK/agent.out" 2>"$WORK/agent.err" &
AGENT_PID=$!; PIDS+=("$AGENT_PID")
wait_line "$WORK/agent.out" "^registered " "berth agent"
INSTANCE=$(sed -n 's/^registered //p' "$WORK/agent.out")

echo "berth server $ENDPOINT (pid $SERVER_PID), agent $INSTANCE (pid $AGENT_PID), docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?') in swarm mode$([[ $SWARM_INIT -eq 1 ]] && echo ' (initialised for this run)'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
# In the background and waited for, so that a signal runs the exit trap at once (bash defers
# traps while a foreground command runs); the trap stops it first.
python3 bench/services.py run --endpoint "$ENDPOINT" --instance-arn "$INSTANCE" \
  --run-id "$RUN_ID" --reps "$REPS" --image "$IMAGE" --image-v2 "$IMAGE_V2" "$@" &
PIDS+=("$!")
wait "$!"
