#!/usr/bin/env bash
# The API on each store backend, side by side in one run (issue #18): a release `berth server`
# on SQLite, on a one-member etcd and on a three-member etcd cluster (all on loopback,
# ephemeral ports and temp dirs, removed at the end), each loaded by berth-loadgen with the
# same signed requests:
#   - DescribeTaskDefinition: closed loops on CONNS keep-alive connections for SECS seconds
#     (requests/s, p50/p99 latency);
#   - RunTask: `--count 10` a call from CALLERS closed loops until TASKS tasks are placed on
#     INSTANCES simulated container instances (`berth-loadgen fleet`, no Docker), or SECS*3 s
#     pass (tasks/s, p50/p99 latency of a call: placement and the commit the API acknowledges).
# etcd members fsync like SQLite does (their data on the same disk). The load generator, the
# fleet simulator, the server and etcd share the machine: the figures compare the backends,
# they are not the ceiling of either.
#
# Usage: bench/store-api.sh  (env: SECS=10 CONNS=16 CALLERS=16 INSTANCES=50 TASKS=3000
#   SIDES="sqlite etcd1 etcd3"; BERTH_BIN / LOADGEN pick the binaries, default a release build
#   in ${CARGO_TARGET_DIR:-target}). Needs etcd (apt-get install etcd-server).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-10}
CONNS=${CONNS:-16}
CALLERS=${CALLERS:-16}
INSTANCES=${INSTANCES:-50}
TASKS=${TASKS:-3000}
SIDES=${SIDES:-sqlite etcd1 etcd3}
command -v etcd >/dev/null || { echo "needs etcd (apt-get install etcd-server)" >&2; exit 1; }
if [[ -z ${BERTH_BIN:-} || -z ${LOADGEN:-} ]]; then
  cargo build --release -q -p berth -p berth-bench
  BERTH_BIN=${BERTH_BIN:-${CARGO_TARGET_DIR:-target}/release/berth}
  LOADGEN=${LOADGEN:-${CARGO_TARGET_DIR:-target}/release/berth-loadgen}
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
field() { python3 -c 'import json,sys;print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

start_etcd() { # members dir -> prints the store URL
  local n=$1 dir=$2 i cluster="" clients="" c p
  local -a cports pports
  for ((i = 0; i < n; i++)); do cports[i]=$(free_port); pports[i]=$(free_port); done
  for ((i = 0; i < n; i++)); do cluster+="${cluster:+,}m$i=http://127.0.0.1:${pports[i]}"; done
  for ((i = 0; i < n; i++)); do
    c=${cports[i]}; p=${pports[i]}
    etcd --name "m$i" --data-dir "$dir/m$i" \
      --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
      --initial-cluster "$cluster" --max-txn-ops=1024 >"$dir.m$i.log" 2>&1 &
    PIDS+=("$!")
    clients+="${clients:+,}127.0.0.1:$c"
  done
  for ((i = 0; i < n; i++)); do
    for _ in $(seq 300); do
      curl -sf "http://127.0.0.1:${cports[i]}/health" 2>/dev/null | grep -q '"health":"true"' && break
      sleep 0.1
    done
  done
  echo "etcd://$clients/berth/"
}

SERVER_PID=""
FLEET_PID=""
start_server() { # store dir
  BERTH_LOG=warn "$BERTH_BIN" server --data-dir "$2/data" --listen 127.0.0.1:0 --store "$1" \
    --dns-listen off --registry-listen off --service-settle-secs 1 \
    >"$2/server.out" 2>"$2/server.err" &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
  for _ in $(seq 300); do grep -q "listening on" "$2/server.out" 2>/dev/null && break; sleep 0.1; done
  EP="http://$(sed -n 's/^listening on //p' "$2/server.out")"
  [[ $EP != "http://" ]] || { echo "server did not start:"; cat "$2/server.err"; exit 1; }
  CREDS="$2/data/credentials"
}

RESULTS=$WORK/results.jsonl
for side in $SIDES; do
  dir=$WORK/$side
  mkdir -p "$dir"
  case $side in
    sqlite) store=sqlite ;;
    etcd1) store=$(start_etcd 1 "$dir/etcd") ;;
    etcd3) store=$(start_etcd 3 "$dir/etcd") ;;
    *) echo "unknown side $side (sqlite, etcd1, etcd3)" >&2; exit 1 ;;
  esac
  echo "[$side] store $store" >&2
  start_server "$store" "$dir"
  "$LOADGEN" --endpoint "$EP" --credentials "$CREDS" --op setup >/dev/null
  d=$("$LOADGEN" --endpoint "$EP" --credentials "$CREDS" --op describe --seconds "$SECS" \
    --connections "$CONNS" --label "$side")
  echo "{\"side\":\"$side\",\"kind\":\"describe\",\"r\":$d}" >>"$RESULTS"
  "$LOADGEN" fleet --endpoint "$EP" --credentials "$CREDS" --cluster bench \
    --instances "$INSTANCES" --status-file "$dir/fleet.json" >"$dir/fleet.log" 2>&1 &
  FLEET_PID=$!; PIDS+=("$FLEET_PID")
  "$LOADGEN" wait-fleet --status-file "$dir/fleet.json" --field registered \
    --at-least "$INSTANCES" --timeout 120 >/dev/null
  r=$("$LOADGEN" runtask --endpoint "$EP" --credentials "$CREDS" --cluster bench --count 10 \
    --callers "$CALLERS" --tasks "$TASKS" --seconds "$((SECS * 3))" --label "$side")
  echo "{\"side\":\"$side\",\"kind\":\"runtask\",\"r\":$r}" >>"$RESULTS"
  kill -INT "$FLEET_PID" 2>/dev/null || true; wait "$FLEET_PID" 2>/dev/null || true
  kill -INT "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
done

python3 - "$RESULTS" "$SECS" "$CONNS" "$CALLERS" "$INSTANCES" <<'PY'
import json, sys
path, secs, conns, callers, instances = sys.argv[1:6]
rows = [json.loads(l) for l in open(path)]
print(f"\nDescribeTaskDefinition ({conns} connections, {secs} s each)")
print(f"{'store':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
for r in rows:
    if r["kind"] == "describe":
        v = r["r"]
        print(f"{r['side']:<8} {v['rps']:>10,.0f} {v['p50_us']/1000:>8.2f} {v['p99_us']/1000:>8.2f} {v['errors']:>7}")
print(f"\nRunTask (--count 10, {callers} callers, {instances} simulated instances)")
print(f"{'store':<8} {'tasks':>6} {'tasks/s':>9} {'calls/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
for r in rows:
    if r["kind"] == "runtask":
        v = r["r"]
        note = "  (time cap hit)" if v["timed_out"] else ""
        err = f"  last error: {v['last_error']}" if v["errors"] or v["failures"] else ""
        print(f"{r['side']:<8} {v['tasks']:>6} {v['tasks_per_s']:>9,.0f} {v['calls']/v['seconds']:>8,.0f} {v['p50_ms']:>8.1f} {v['p99_ms']:>8.1f} {v['errors']:>7}{note}{err}")
PY
