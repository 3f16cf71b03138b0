#!/usr/bin/env bash
# Idle cost of health-checked tasks: CPU of dockerd and of `berth agent` while N tasks with a
# Docker health check sit idle and healthy, for this working tree's agent and, side by side in
# the same run, for a baseline revision's.
#
# For each variant (the baseline first, then this tree; each further repetition reverses the
# order), with its own binary for both processes, on a fresh temporary data dir:
# starts `berth server` (loopback, port 0) and `berth agent --memory 4096`, registers a task
# definition like bench/services.py's (one container of berth-demo:latest, 16 MiB, 8080 on a
# dynamic host port, exec-form health check /hello -check http://127.0.0.1:8080/health every
# 5 s, timeout 2 s, 1 retry, no start period), runs N tasks (RunTask, 10 at a time), waits
# until DescribeTasks shows all of them RUNNING and HEALTHY, lets them settle for SETTLE_SECS,
# then samples utime+stime of dockerd, containerd, the agent and the server from
# /proc/PID/stat over SAMPLE_SECS and prints each as % of one core. Then it stops the agent
# and the server and removes the variant's containers. Last, it prints one row per sample,
# the mean per variant and the ratio this-tree/baseline of the means for dockerd and the
# agent.
#
# The baseline revision is checked out in a git worktree (detached, under
# $TARGET_DIR/idle-health-baseline/src, reused by later runs) and built into its own target
# dir ($TARGET_DIR/idle-health-baseline/target); "none" skips it. This tree's binary is built
# with `cargo build --release -p berth` (or taken from $BERTH_BIN).
#
# Needs Docker (its dockerd on this host), the image berth-demo:latest
# (scripts/build-demo-image.sh) and python3 with boto3. Takes a few minutes (more on the first
# run, which builds the baseline).
# On exit, and on failure: agent and server stopped, every container labelled
# berth.container-instance-arn=<an instance of this run> removed, temporary dirs removed.
#
# Usage: bench/idle-health.sh [baseline revision (default 09da84e, what main was when the
#        agent moved to Docker's events) | none]
# Environment: TASKS (default 50), SAMPLE_SECS (default 30), SETTLE_SECS (default 10),
#        REPS (default 1: repetitions of the pair, the order alternating), BERTH_BIN (this
#        tree's binary, skips its build), CARGO_TARGET_DIR.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
BASELINE=${1:-09da84e}
TASKS=${TASKS:-50}
REPS=${REPS:-1}
SAMPLE_SECS=${SAMPLE_SECS:-30}
SETTLE_SECS=${SETTLE_SECS:-10}
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
IMAGE=berth-demo:latest

docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "no image $IMAGE: run scripts/build-demo-image.sh" >&2; exit 1; }
python3 -c 'import boto3' 2>/dev/null || { echo "python3 with boto3 is needed" >&2; exit 1; }
DOCKERD_PID=$({ pidof dockerd || true; } | awk '{print $1}')
[[ -n $DOCKERD_PID && -r /proc/$DOCKERD_PID/stat ]] || { echo "no dockerd process on this host" >&2; exit 1; }
CONTAINERD_PID=$({ pidof containerd || true; } | awk '{print $1}')
TICK=$(getconf CLK_TCK)

WORK=$(mktemp -d)
PIDS=()
INSTANCES=()
cleanup() {
  local rc=$?
  stop_berth
  if [[ $rc -ne 0 && -f $WORK/agent.err ]]; then
    echo "--- server log (tail) ---" >&2; tail -n 20 "$WORK/server.err" >&2 || true
    echo "--- agent log (tail) ---" >&2; tail -n 40 "$WORK/agent.err" >&2 || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
# Stops agent and server, then removes the containers of every instance of this run.
stop_berth() {
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  local left=()
  for inst in "${INSTANCES[@]}"; do
    mapfile -t -O "${#left[@]}" left < <(docker ps -aq --filter "label=berth.container-instance-arn=$inst")
  done
  if [[ ${#left[@]} -gt 0 ]]; then
    docker rm -f "${left[@]}" >/dev/null || echo "cleanup failed: containers of ${INSTANCES[*]} may be left" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_line() { # file pattern what
  for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "$3 did not start:" >&2; cat "${1%.out}.err" >&2; return 1
}

# utime+stime of a process, in clock ticks (0 if it is gone).
ticks() {
  [[ -n ${1:-} && -r /proc/$1/stat ]] || { echo 0; return; }
  sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# % of one core between two tick readings over $SAMPLE_SECS.
pct() { awk -v a="$1" -v b="$2" -v t="$TICK" -v s="$SAMPLE_SECS" 'BEGIN { printf "%.2f", (b - a) / t / s * 100 }'; }

# Builds the baseline in its worktree; prints its binary's path.
build_baseline() {
  local rev dir
  rev=$(git rev-parse --verify "$BASELINE^{commit}")
  dir=$TARGET_DIR/idle-health-baseline
  if [[ -d $dir/src ]]; then
    [[ $(git -C "$dir/src" rev-parse HEAD) == "$rev" ]] || git -C "$dir/src" checkout -q --detach "$rev"
  else
    mkdir -p "$dir"
    git worktree add -q --detach "$dir/src" "$rev" >&2
  fi
  (cd "$dir/src" && CARGO_TARGET_DIR="$dir/target" cargo build --release -q -p berth) >&2
  echo "$dir/target/release/berth"
}

# Runs one variant: label, binary. Appends "label dockerd containerd agent server" to $WORK/rows.
measure() {
  local label=$1 bin=$2 d0 c0 a0 s0 d1 c1 a1 s1
  # Fresh state; the old logs go first, or wait_line could read the last variant's lines.
  rm -rf "$WORK/server" "$WORK/agent" "$WORK"/*.out "$WORK"/*.err
  BERTH_LOG=warn "$bin" server --data-dir "$WORK/server" --listen 127.0.0.1:0 \
    >"$WORK/server.out" 2>"$WORK/server.err" &
  local server_pid=$!; PIDS+=("$server_pid")
  wait_line "$WORK/server.out" "^listening on " "berth server"
  local endpoint
  endpoint="http://$(sed -n 's/^listening on //p' "$WORK/server.out")"
  AWS_SHARED_CREDENTIALS_FILE="$WORK/server/credentials" BERTH_LOG=warn "$bin" agent \
    --server "$endpoint" --data-dir "$WORK/agent" --memory 4096 \
    >"$WORK/agent.out" 2>"$WORK/agent.err" &
  local agent_pid=$!; PIDS+=("$agent_pid")
  wait_line "$WORK/agent.out" "^registered " "berth agent"
  INSTANCES+=("$(sed -n 's/^registered //p' "$WORK/agent.out")")

  AWS_SHARED_CREDENTIALS_FILE="$WORK/server/credentials" AWS_CONFIG_FILE="$WORK/server/config" \
    python3 - "$endpoint" "$TASKS" "$IMAGE" <<'PY'
import sys, time
import boto3

endpoint, count, image = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ecs = boto3.client("ecs", endpoint_url=endpoint, region_name="us-east-1")
td = ecs.register_task_definition(family="idle-health", containerDefinitions=[{
    "name": "web", "image": image, "memory": 16, "essential": True,
    "portMappings": [{"containerPort": 8080, "hostPort": 0}],
    "healthCheck": {"command": ["CMD", "/hello", "-check", "http://127.0.0.1:8080/health"],
                    "interval": 5, "timeout": 2, "retries": 1, "startPeriod": 0},
}])["taskDefinition"]["taskDefinitionArn"]
arns = []
while len(arns) < count:
    r = ecs.run_task(taskDefinition=td, count=min(10, count - len(arns)))
    if r.get("failures"):
        sys.exit(f"RunTask failures: {r['failures']}")
    arns += [t["taskArn"] for t in r["tasks"]]
t0 = time.monotonic()
while True:
    tasks = []
    for i in range(0, len(arns), 100):
        tasks += ecs.describe_tasks(tasks=arns[i:i + 100])["tasks"]
    healthy = [t for t in tasks if t["lastStatus"] == "RUNNING" and t.get("healthStatus") == "HEALTHY"]
    if len(healthy) == count:
        print(f"  {count} tasks RUNNING and HEALTHY after {time.monotonic() - t0:.1f} s", flush=True)
        break
    stopped = [t for t in tasks if t["lastStatus"] == "STOPPED"]
    if stopped:
        sys.exit(f"{len(stopped)} tasks stopped: {stopped[0].get('stoppedReason')}")
    if time.monotonic() - t0 > 300:
        sys.exit(f"only {len(healthy)} of {count} tasks healthy after 300 s")
    time.sleep(1)
PY
  sleep "$SETTLE_SECS"
  d0=$(ticks "$DOCKERD_PID"); c0=$(ticks "$CONTAINERD_PID"); a0=$(ticks "$agent_pid"); s0=$(ticks "$server_pid")
  sleep "$SAMPLE_SECS"
  d1=$(ticks "$DOCKERD_PID"); c1=$(ticks "$CONTAINERD_PID"); a1=$(ticks "$agent_pid"); s1=$(ticks "$server_pid")
  kill -0 "$agent_pid" || { echo "the agent died while sampled" >&2; return 1; }
  echo "$label $(pct "$d0" "$d1") $(pct "$c0" "$c1") $(pct "$a0" "$a1") $(pct "$s0" "$s1")" >>"$WORK/rows"
  stop_berth
}

if [[ -n ${BERTH_BIN:-} ]]; then
  CURRENT=$BERTH_BIN
else
  cargo build --release -q -p berth
  CURRENT=$TARGET_DIR/release/berth
fi
VARIANTS=("this-tree $CURRENT")
if [[ $BASELINE != none ]]; then
  BASE_BIN=$(build_baseline)
  VARIANTS=("baseline-$(git rev-parse --short "$BASELINE^{commit}") $BASE_BIN" "${VARIANTS[@]}")
fi
: >"$WORK/rows"
echo "idle-health: $TASKS idle tasks with a 5 s Docker health check; CPU sampled over ${SAMPLE_SECS} s after all are healthy (+${SETTLE_SECS} s); $REPS repetition(s); this tree is $(git rev-parse --short HEAD)$([[ -n $(git status --porcelain -- crates 2>/dev/null) ]] && echo ' with uncommitted changes'); docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'), $(nproc) CPUs"
for ((rep = 1; rep <= REPS; rep++)); do
  order=("${VARIANTS[@]}")
  # Alternate the order, so that neither variant always runs on a warmer engine.
  if ((rep % 2 == 0 && ${#order[@]} == 2)); then order=("${order[1]}" "${order[0]}"); fi
  for v in "${order[@]}"; do
    read -r label bin <<<"$v"
    echo "$label (repetition $rep):"
    measure "$label" "$bin"
  done
done

echo
printf '%-22s %10s %12s %8s %8s   (%% of one core)\n' variant dockerd containerd agent server
while read -r label d c a s; do
  printf '%-22s %10s %12s %8s %8s\n' "$label" "$d" "$c" "$a" "$s"
done <"$WORK/rows"
# Means per variant (in first-seen order), and the ratio this tree / baseline.
awk '{ if (!($1 in n)) order[k++] = $1; n[$1]++; d[$1] += $2; c[$1] += $3; a[$1] += $4; s[$1] += $5 }
  END {
    if (k == 0) exit
    print ""
    for (i = 0; i < k; i++) { v = order[i]
      printf "mean %-17s %10.2f %12.2f %8.2f %8.2f   (%d samples)\n", v, d[v] / n[v], c[v] / n[v], a[v] / n[v], s[v] / n[v], n[v] }
    if (k == 2) { b = order[0]; t = order[1]
      printf "this tree / baseline: dockerd %s, agent %s\n",
        (d[b] > 0 ? sprintf("%.2f", d[t] / d[b]) : "-"), (a[b] > 0 ? sprintf("%.2f", a[t] / a[b]) : "-") }
  }' "$WORK/rows"
