#!/usr/bin/env bash
# Scale benchmark: the control plane with thousands of simulated container instances, a
# baseline server (built from a git revision) and the working tree's server side by side, in
# one run on this machine.
#
# Each phase starts a fresh release `berth server` (temporary data dir, loopback, port 0,
# --service-settle-secs 1 so that service figures measure the control plane, not ECS's 40 s
# settle wait) and `berth-loadgen fleet`, which simulates the container instances in one
# process over the real agent protocol (RegisterContainerInstance with the agent's attributes,
# 3 zones, m5.large / m5.xlarge / c5.2xlarge; long-polls; every task desired RUNNING is
# reported RUNNING at once, every task desired STOPPED reported STOPPED at once; no Docker).
# Then, per server:
#   - SMALL instances (1,000): RunTask throughput, `--count 10` a call from 16 concurrent
#     callers (berth-loadgen runtask, placement + commit as the API acknowledges it) until
#     RT_SMALL tasks are placed or RT_CAP seconds pass;
#   - LARGE instances (5,000): the same RunTask throughput (RT_LARGE tasks); then a REPLICA
#     service of LARGE tasks from CreateService to steady state (one COMPLETED deployment,
#     runningCount = desiredCount), then its rolling update to a new revision (maximumPercent
#     200, minimumHealthyPercent 100) until the new deployment is COMPLETED, alone, and the
#     fleet runs no task of the old revision; then RunTask tops the cluster up to 5 x LARGE
#     running tasks (25,000), and the server's RSS (VmRSS, and its peak VmHWM) and database
#     size (berth.db + WAL) are read.
# Every phase has a time cap and prints "timeout after N s" instead of hanging (registration
# 300 s, each RunTask run 40 s, CreateService 90 s, the update 120 s, the top-up 120 s, the
# last wait 45 s: about 25 minutes for both servers with a slow baseline, builds aside); a
# figure taken after a cap says at what it was taken (e.g. tasks running). Each phase prints
# the CPU seconds the server and the fleet simulator used: the load generator and the fleet
# share the machine's cores with the server, as a benchmark on one host must. The soft limit
# on open files is raised to the hard one (`ulimit -n`) for the servers and the fleet.
#
# Targets (issue #9): >= 2,000 tasks/s at 5,000 instances; service steady within 30 s,
# update within 60 s; RSS < 400 MB.
#
# Usage: bench/scale.sh [--quick] [--baseline REV] [--only baseline|new]
#                       [--baseline-bin PATH] [--new-bin PATH] [--keep]
#   --quick         200 / 1,000 instances, a 1,000-task service, 5,000 running tasks
#   --baseline REV  git revision of the baseline (default 09da84e); built in a git worktree
#                   under target/bench-baseline with its own CARGO_TARGET_DIR (release)
#   --only SIDE     run one side only
#   --*-bin PATH    use this berth binary instead of building it
#   --keep          keep the data dirs and logs (printed at the end)
# Environment: SMALL, LARGE, RT_SMALL, RT_LARGE, SERVICE, TOTAL, CALLERS, RT_CAP, REG_CAP,
# SVC_CAP, UPD_CAP, FILL_CAP, SETTLE_CAP override the sizes and caps (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BASE_REV=09da84e
QUICK=0
ONLY=""
BASE_BIN=""
NEW_BIN=""
KEEP=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1 ;;
    --baseline) BASE_REV=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --baseline-bin) BASE_BIN=$2; shift ;;
    --new-bin) NEW_BIN=$2; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [[ $QUICK -eq 1 ]]; then
  SMALL=${SMALL:-200}; LARGE=${LARGE:-1000}; RT_SMALL=${RT_SMALL:-2000}; RT_LARGE=${RT_LARGE:-3000}
else
  SMALL=${SMALL:-1000}; LARGE=${LARGE:-5000}; RT_SMALL=${RT_SMALL:-10000}; RT_LARGE=${RT_LARGE:-15000}
fi
SERVICE=${SERVICE:-$LARGE}
TOTAL=${TOTAL:-$((LARGE * 5))}
CALLERS=${CALLERS:-16}
RT_CAP=${RT_CAP:-40}
REG_CAP=${REG_CAP:-300}
SVC_CAP=${SVC_CAP:-90}
UPD_CAP=${UPD_CAP:-120}
FILL_CAP=${FILL_CAP:-120}
SETTLE_CAP=${SETTLE_CAP:-45}
CLUSTER=scale
SCRIPT_START=$(date +%s)

# File descriptors: each simulated instance holds one connection in its long-poll, so the
# fleet and the server each need about LARGE of them. Raise the soft limit to the hard one
# for this shell and everything it starts (the fleet also raises its own at start).
HARD=$(ulimit -Hn)
ulimit -n "$HARD"
NEED=$((LARGE * 2 + 1024))
if [[ $HARD != unlimited && $HARD -lt $NEED ]]; then
  echo "warning: open-file hard limit $HARD < $NEED needed for $LARGE instances; expect connection errors" >&2
fi
echo "open-file limit: $(ulimit -n) (fs.nr_open $(cat /proc/sys/fs/nr_open 2>/dev/null || echo ?), fs.file-max $(cat /proc/sys/fs/file-max 2>/dev/null || echo ?)); $(nproc) cores"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-scale.XXXXXX")
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
SERVER_PID=""; FLEET_PID=""; PHASE_START=0
cleanup() {
  for p in $FLEET_PID $SERVER_PID; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $KEEP -eq 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- builds ---------------------------------------------------------------------------------
echo "building berth-loadgen (release, working tree)..."
cargo build --release -q -p berth-bench
LOADGEN=${CARGO_TARGET_DIR:-target}/release/berth-loadgen
[[ $LOADGEN = /* ]] || LOADGEN=$ROOT/$LOADGEN

NEW_NOTE=""
if [[ $ONLY != baseline && -z $NEW_BIN ]]; then
  echo "building the working tree's berth (release)..."
  if cargo build --release -q -p berth 2>"$WORK/new-build.log"; then
    NEW_BIN=${CARGO_TARGET_DIR:-target}/release/berth
    [[ $NEW_BIN = /* ]] || NEW_BIN=$ROOT/$NEW_BIN
  else
    tail -20 "$WORK/new-build.log" >&2
    NEW_NOTE="the working tree does not build"
    echo "warning: $NEW_NOTE; the new side is skipped" >&2
  fi
fi

if [[ $ONLY != new && -z $BASE_BIN ]]; then
  BASE_DIR=$ROOT/target/bench-baseline
  BASE_SRC=$BASE_DIR/src
  mkdir -p "$BASE_DIR"
  if [[ ! -e $BASE_SRC/.git ]]; then
    git worktree add --detach "$BASE_SRC" "$BASE_REV" >/dev/null
  elif [[ $(git -C "$BASE_SRC" rev-parse HEAD) != $(git rev-parse "$BASE_REV^{commit}") ]]; then
    git -C "$BASE_SRC" checkout -q --detach "$BASE_REV"
  fi
  echo "building the baseline berth at $(git -C "$BASE_SRC" rev-parse --short HEAD) (release, $BASE_DIR/target)..."
  (cd "$BASE_SRC" && CARGO_TARGET_DIR=$BASE_DIR/target cargo build --release -q -p berth)
  BASE_BIN=$BASE_DIR/target/release/berth
fi

SIDES=()
[[ $ONLY != new && -n $BASE_BIN ]] && SIDES+=(baseline)
[[ $ONLY != baseline && -n $NEW_BIN ]] && SIDES+=(new)
[[ ${#SIDES[@]} -gt 0 ]] || { echo "nothing to run" >&2; exit 1; }

# ---- helpers --------------------------------------------------------------------------------
record() { # side key json-value
  python3 - "$1" "$2" "$3" >>"$RESULTS" <<'PY'
import json, sys
print(json.dumps({"side": sys.argv[1], "key": sys.argv[2], "value": json.loads(sys.argv[3])}))
PY
}
field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]); print(v.get(sys.argv[2]) if v.get(sys.argv[2]) is not None else "")' "$1" "$2"; }
elapsed() { echo $(( $(date +%s) - SCRIPT_START )); }

EP=""; DATA=""; STATUS=""
start_server() { # side dir
  local bin=$1 dir=$2
  mkdir -p "$dir"
  BERTH_LOG=warn "$bin" server --data-dir "$dir/data" --listen 127.0.0.1:0 \
    --account-id 123456789012 --service-settle-secs 1 >"$dir/server.out" 2>"$dir/server.err" &
  SERVER_PID=$!
  for _ in $(seq 200); do grep -q "listening on" "$dir/server.out" 2>/dev/null && break; sleep 0.05; done
  EP="http://$(sed -n 's/^listening on //p' "$dir/server.out")"
  [[ $EP != "http://" ]] || { echo "server did not start:"; cat "$dir/server.err"; return 1; }
  DATA=$dir/data
}
start_fleet() { # instances dir
  STATUS=$2/fleet.json
  "$LOADGEN" fleet --endpoint "$EP" --credentials "$DATA/credentials" --cluster "$CLUSTER" \
    --instances "$1" --status-file "$STATUS" --progress-secs 15 >"$2/fleet.log" 2>&1 &
  FLEET_PID=$!
}
TICKS=$(getconf CLK_TCK)
cpu_secs() { awk -v t="$TICKS" '{printf "%.0f", ($14 + $15) / t}' "/proc/$1/stat" 2>/dev/null || echo "?"; }
stop_all() {
  [[ -n $SERVER_PID && -n $FLEET_PID ]] && echo "  CPU used: server $(cpu_secs "$SERVER_PID") s, fleet simulator $(cpu_secs "$FLEET_PID") s (phase wall time $(( $(date +%s) - PHASE_START )) s)"

  [[ -n $FLEET_PID ]] && { kill -INT "$FLEET_PID" 2>/dev/null || true; wait "$FLEET_PID" 2>/dev/null || true; }
  [[ -n $SERVER_PID ]] && { kill -INT "$SERVER_PID" 2>/dev/null || true; timeout 20 tail --pid="$SERVER_PID" -f /dev/null 2>/dev/null || kill -9 "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
  FLEET_PID=""; SERVER_PID=""
}
register_fleet() { # side label instances dir
  local side=$1 label=$2 n=$3 dir=$4 t0 out
  t0=$(date +%s.%N)
  start_fleet "$n" "$dir"
  out=$("$LOADGEN" wait-fleet --status-file "$STATUS" --field registered --at-least "$n" --timeout "$REG_CAP")
  record "$side" "register_$label" "$out"
  if [[ $(field "$out" timed_out) == True ]]; then
    echo "  [$side] registering $n instances: timeout after $REG_CAP s ($(field "$out" value) registered)"
  else
    echo "  [$side] registered $n instances in $(python3 -c "print(f'{$(date +%s.%N)-$t0:.1f}')") s"
  fi
}
runtask() { # side key tasks cap
  local out
  out=$("$LOADGEN" runtask --endpoint "$EP" --credentials "$DATA/credentials" --cluster "$CLUSTER" \
    --count 10 --callers "$CALLERS" --tasks "$3" --seconds "$4" --label "$1")
  record "$1" "$2" "$out"
  python3 - "$1" "$2" "$out" <<'PY'
import json, sys
side, key, v = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
note = f"  timeout after {v['seconds']:.0f} s" if v["timed_out"] else ""
err = f"  errors {v['errors']}, failures {v['failures']}, last: {v['last_error']}" if v["errors"] or v["failures"] else ""
print(f"  [{side}] {key}: {v['tasks']} tasks in {v['seconds']:.1f} s = {v['tasks_per_s']:,.0f} tasks/s (p50 {v['p50_ms']:.0f} ms, p99 {v['p99_ms']:.0f} ms){note}{err}")
PY
}

phase_small() { # side bin
  local side=$1 dir=$WORK/$1-small
  echo "[$side] $SMALL instances (t+$(elapsed) s)"; PHASE_START=$(date +%s)
  start_server "$2" "$dir"
  register_fleet "$side" small "$SMALL" "$dir"
  runtask "$side" runtask_small "$RT_SMALL" "$RT_CAP"
  stop_all
}

phase_large() { # side bin
  local side=$1 dir=$WORK/$1-large out
  echo "[$side] $LARGE instances (t+$(elapsed) s)"; PHASE_START=$(date +%s)
  start_server "$2" "$dir"
  register_fleet "$side" large "$LARGE" "$dir"
  runtask "$side" runtask_large "$RT_LARGE" "$RT_CAP"
  # The service: create to steady state, then a rolling update.
  while IFS= read -r line; do
    [[ -z $line ]] && continue
    record "$side" "$(field "$line" op)" "$line"
    python3 - "$side" "$line" <<'PY'
import json, sys
side, v = sys.argv[1], json.loads(sys.argv[2])
what = {"service-create": "CreateService -> steady", "service-update": "rolling update -> completed"}[v["op"]]
if v["timed_out"]:
    print(f"  [{side}] {what} ({v['tasks']} tasks): timeout after {v['cap_seconds']} s (running {v['running']})")
else:
    print(f"  [{side}] {what} ({v['tasks']} tasks): {v['seconds']:.1f} s")
PY
  done < <("$LOADGEN" service --endpoint "$EP" --credentials "$DATA/credentials" --cluster "$CLUSTER" \
    --name web --family web --count "$SERVICE" --create-timeout "$SVC_CAP" --update \
    --update-timeout "$UPD_CAP" --fleet-status "$STATUS" --label "$side" 2>>"$dir/service.log" || true)
  # Top up to TOTAL running tasks, then measure memory and disk.
  local running need
  running=$(field "$(cat "$STATUS" 2>/dev/null || echo "{}")" running)
  need=$((TOTAL - ${running:-0}))
  if [[ $need -gt 0 ]]; then
    runtask "$side" fill "$need" "$FILL_CAP"
  fi
  out=$("$LOADGEN" wait-fleet --status-file "$STATUS" --field running --at-least "$TOTAL" --timeout "$SETTLE_CAP")
  running=$(field "$out" value)
  sleep 2 # let the WAL checkpoint and the allocator settle after the last write
  local rss hwm db wal
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
  db=$(stat -c %s "$DATA/berth.db" 2>/dev/null || echo 0)
  wal=$(stat -c %s "$DATA/berth.db-wal" 2>/dev/null || echo 0)
  local st inst ferr fpolls
  st=$(cat "$STATUS" 2>/dev/null || echo '{}')
  inst=$(field "$st" registered); ferr=$(field "$st" errors); fpolls=$(field "$st" polls)
  record "$side" memory "{\"rss_kb\": ${rss:-0}, \"hwm_kb\": ${hwm:-0}, \"db_bytes\": $db, \"wal_bytes\": $wal, \"running\": ${running:-0}, \"instances\": ${inst:-0}, \"fleet_errors\": ${ferr:-0}, \"fleet_polls\": ${fpolls:-0}}"
  echo "  [$side] with ${inst:-0} instances and ${running:-0} running tasks: RSS $((rss / 1024)) MB (peak $((hwm / 1024)) MB), database $((db / 1048576)) MB + WAL $((wal / 1048576)) MB"
  stop_all
}

# ---- run ------------------------------------------------------------------------------------
echo "sizes: $SMALL and $LARGE instances; RunTask $RT_SMALL / $RT_LARGE tasks (cap $RT_CAP s, $CALLERS callers, --count 10); service $SERVICE tasks; $TOTAL running tasks"
for side in "${SIDES[@]}"; do
  bin=$BASE_BIN; [[ $side == new ]] && bin=$NEW_BIN
  phase_small "$side" "$bin"
done
for side in "${SIDES[@]}"; do
  bin=$BASE_BIN; [[ $side == new ]] && bin=$NEW_BIN
  phase_large "$side" "$bin"
done

# ---- the table ------------------------------------------------------------------------------
echo
python3 - "$RESULTS" "$SMALL" "$LARGE" "$SERVICE" "$TOTAL" "${BASE_REV}" "$NEW_NOTE" <<'PY'
import json, sys
path, small, large, service, total, rev, new_note = sys.argv[1:8]
small, large, service, total = int(small), int(large), int(service), int(total)
res = {}
for line in open(path):
    r = json.loads(line)
    res[(r["side"], r["key"])] = r["value"]

def get(side, key):
    return res.get((side, key))

def reg(v):
    if v is None: return None, "-"
    if v["timed_out"]: return None, f"timeout after {v['seconds']:.0f} s ({v['value']})"
    return v["seconds"], f"{v['seconds']:.1f} s"
def rt(v):
    if v is None: return None, "-"
    s = f"{v['tasks_per_s']:,.0f}"
    if v["timed_out"]: s += f" ({v['tasks']} in {v['seconds']:.0f} s cap)"
    return v["tasks_per_s"], s
def svc(v):
    if v is None: return None, "skipped"
    if v["timed_out"]: return None, f"timeout after {v['cap_seconds']} s"
    return v["seconds"], f"{v['seconds']:.1f} s"
def mem(key):
    def f(v):
        if v is None: return None, "-"
        if key == "rss": x = v["rss_kb"] / 1024; return x, f"{x:,.0f} MB (peak {v['hwm_kb']/1024:,.0f})"
        x = (v["db_bytes"] + v["wal_bytes"]) / 1048576
        return x, f"{x:,.0f} MB (WAL {v['wal_bytes']/1048576:,.0f})"
    return f
def fleet_errors(v):
    if v is None: return None, "-"
    return v["fleet_errors"], f"{v['fleet_errors']:,} of {v['fleet_polls']:,} polls"
def running(v):
    if v is None: return None, "-"
    return v["running"], f"{v['running']:,} on {v['instances']:,} instances"

rows = [
    (f"register {small:,} instances", "register_small", reg, "lower", ""),
    (f"register {large:,} instances", "register_large", reg, "lower", ""),
    (f"RunTask tasks/s @ {small:,} instances", "runtask_small", rt, "higher", ""),
    (f"RunTask tasks/s @ {large:,} instances", "runtask_large", rt, "higher", ">= 2,000" if large >= 5000 else ""),
    (f"service {service:,} tasks -> steady", "service-create", svc, "lower", "<= 30 s" if service >= 5000 else ""),
    (f"rolling update {service:,} tasks", "service-update", svc, "lower", "<= 60 s" if service >= 5000 else ""),
    ("tasks running at measurement", "memory", running, None, f"{total:,}"),
    ("simulated agents' failed calls", "memory", fleet_errors, None, "0"),
    ("server RSS", "memory", mem("rss"), "lower", "< 400 MB" if large >= 5000 else ""),
    ("database (berth.db + WAL)", "memory", mem("db"), "lower", ""),
]
sides = [s for s in ("baseline", "new") if any(k[0] == s for k in res)]
head = f"{'':38} " + " ".join(f"{(f'baseline {rev}' if s == 'baseline' else 'new (working tree)'):>30}" for s in sides)
if len(sides) == 2: head += f" {'new vs baseline':>18}"
head += f"  {'target':>9}"
print(head)
print("-" * len(head))
for name, key, fmt, better, target in rows:
    vals = [fmt(get(s, key)) for s in sides]
    line = f"{name:38} " + " ".join(f"{v[1]:>30}" for v in vals)
    if len(sides) == 2:
        (b, _), (n, _) = vals
        ratio = ""
        mb, mn = get("baseline", "memory"), get("new", "memory")
        comparable = key != "memory" or (mb and mn and abs(mb["running"] - mn["running"]) <= 0.05 * max(mb["running"], mn["running"], 1))
        if better and b and n and not comparable:
            ratio = "n/a (tasks differ)"
        elif better and b and n:
            r = n / b if better == "higher" else b / n
            good, bad = ("smaller", "larger") if key == "memory" else ("faster", "slower")
            if 0.95 < r < 1.05:
                ratio = "1.0x"
            else:
                ratio = f"{r:,.1f}x {good}" if r >= 1 else f"{1 / r:,.1f}x {bad}"
        elif better and n and not b and get("baseline", key) is not None:
            ratio = "baseline timed out"
        line += f" {ratio:>18}"
    line += f"  {target:>9}"
    print(line)
print()
print("Service figures use --service-settle-secs 1 (ECS and Berth's default is 40 s: a task without")
print("health checks counts as healthy after it), so they measure the control plane itself.")
print(f"RunTask: --count 10 a call, 16 concurrent callers; tasks/s = tasks placed / seconds (acknowledged by the API).")
if new_note: print(f"new: {new_note}")
PY
echo "total time: $(elapsed) s"
