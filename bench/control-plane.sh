#!/usr/bin/env bash
# Control-plane benchmark: Berth vs moto's server, same signed requests, same run.
#
# Starts a release `berth server` and `moto_server` on loopback ports, loads each with
# berth-loadgen (a Rust closed-loop generator on the same 2-core machine), and prints
# requests/s, p50/p99 latency and the ratio Berth/moto for DescribeTaskDefinition,
# ListTaskDefinitions and RegisterTaskDefinition; then registers 10,000 revisions into Berth
# and prints its RSS. Everything it starts is stopped on exit.
#
# Usage: bench/control-plane.sh [seconds-per-op (default 10)]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${BENCH_CONNECTIONS:-16}
MOTO_SECS=${MOTO_SECONDS:-5}

cargo build --release -q -p berth -p berth-bench
BERTH=target/release/berth
LOADGEN=target/release/berth-loadgen
command -v moto_server >/dev/null || { echo "moto_server not found: pip install 'moto[server]'" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# Berth, release build.
BERTH_LOG=warn "$BERTH" server --data-dir "$WORK/berth" --listen 127.0.0.1:0 --account-id 123456789012 \
  >"$WORK/berth.out" 2>"$WORK/berth.err" &
BERTH_PID=$!; PIDS+=("$BERTH_PID")
for _ in $(seq 100); do grep -q "listening on" "$WORK/berth.out" 2>/dev/null && break; sleep 0.1; done
BERTH_EP="http://$(sed -n 's/^listening on //p' "$WORK/berth.out")"
CREDS="$WORK/berth/credentials"

# moto's server, the baseline.
MOTO_PORT=$(free_port)
moto_server -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$MOTO_PORT/" && break; sleep 0.2; done
MOTO_EP="http://127.0.0.1:$MOTO_PORT"

"$LOADGEN" --endpoint "$BERTH_EP" --credentials "$CREDS" --op setup
"$LOADGEN" --endpoint "$MOTO_EP" --op setup
# A realistic list: 100 revisions in the family (one full page).
"$LOADGEN" --endpoint "$BERTH_EP" --credentials "$CREDS" --op fill --count 100 --connections 4 >/dev/null
"$LOADGEN" --endpoint "$MOTO_EP" --op fill --count 100 --connections 4 >/dev/null

field() { python3 -c 'import json,sys;print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

printf '\n%-24s %12s %9s %9s | %10s %9s %9s | %8s\n' "operation" "berth req/s" "p50 ms" "p99 ms" "moto req/s" "p50 ms" "p99 ms" "ratio"
for op in describe list register; do
  case $op in describe) name=DescribeTaskDefinition;; list) name=ListTaskDefinitions;; register) name=RegisterTaskDefinition;; esac
  b=$("$LOADGEN" --endpoint "$BERTH_EP" --credentials "$CREDS" --op "$op" --seconds "$SECS" --connections "$CONNS" --label berth)
  m=$("$LOADGEN" --endpoint "$MOTO_EP" --op "$op" --seconds "$MOTO_SECS" --connections 8 --label moto)
  echo "$b" >>"$WORK/results.jsonl"; echo "$m" >>"$WORK/results.jsonl"
  python3 - "$name" "$b" "$m" <<'PY'
import json, sys
name, b, m = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ratio = b["rps"] / m["rps"] if m["rps"] else float("inf")
print(f'{name:<24} {b["rps"]:>12,.0f} {b["p50_us"]/1000:>9.2f} {b["p99_us"]/1000:>9.2f} | {m["rps"]:>10,.0f} {m["p50_us"]/1000:>9.2f} {m["p99_us"]/1000:>9.2f} | {ratio:>7.0f}x'
      + (f'  (errors: berth {b["errors"]}, moto {m["errors"]})' if b["errors"] or m["errors"] else ''))
PY
done

rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
echo
echo "berth RSS before fill: $(rss "$BERTH_PID") MB"
fill=$("$LOADGEN" --endpoint "$BERTH_EP" --credentials "$CREDS" --op fill --count 10000 --connections 64)
echo "registered 10,000 revisions in $(field "$fill" seconds) s ($(python3 -c "import json,sys;d=json.loads(sys.argv[1]);print(f'{d[\"count\"]/d[\"seconds\"]:,.0f}')" "$fill") registrations/s, each durable before it is acknowledged)"
echo "berth RSS after 10,000 more revisions: $(rss "$BERTH_PID") MB"
echo "database size: $(du -sh "$WORK/berth/berth.db" | cut -f1) (+ WAL $(du -sh "$WORK/berth/berth.db-wal" 2>/dev/null | cut -f1 || echo 0))"
