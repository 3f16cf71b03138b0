#!/usr/bin/env bash
# The load balancer data plane (issue #13), side by side in one run on loopback: the same
# backend (berth-lb-bench backend, a small hyper server) hit directly, through nginx (Debian's
# package, reverse proxy with a keep-alive upstream pool, generated config, ephemeral port) and
# through Berth's ALB listener (berth-lb-bench lb: berth-lb with one forward rule set). The same
# closed-loop generator (berth-lb-bench load: CONNS keep-alive HTTP/1.1 connections, GET /)
# loads each in turn, alternating, REPS times. Prints the median requests/s, p50 and p99, the
# latency each proxy adds over the direct path, and Berth / nginx ratios.
#
# Target (issue #13): at least nginx's throughput and under 0.5 ms added p99.
# Every process shares the machine's cores (on the project's 2-core machines the generator,
# the proxy and the backend compete: say so with the figures).
#
# Usage: bench/lb.sh [--seconds N] [--reps N] [--connections N] [--threads N]
#   --threads N   worker threads of the backend, Berth's LB and nginx's worker_processes (2)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=5
REPS=3
CONNS=${BENCH_CONNECTIONS:-16}
THREADS=2
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) SECS=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

NGINX=$(command -v nginx || true)
if [[ -z $NGINX && -x /usr/sbin/nginx ]]; then NGINX=/usr/sbin/nginx; fi
if [[ -z $NGINX ]]; then
  echo "installing Debian's nginx package..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) >&2
  NGINX=/usr/sbin/nginx
fi

echo "building berth-lb-bench (release)..." >&2
cargo build --release -q -p berth-lb --bin berth-lb-bench
BIN=$PWD/target/release/berth-lb-bench

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  local np; np=$(cat "$WORK/nginx.pid" 2>/dev/null || true)
  if [[ -n $np ]]; then kill "$np" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_listening() { # file -> prints the address
  for _ in $(seq 200); do grep -q "listening on" "$1" 2>/dev/null && break; sleep 0.05; done
  sed -n 's/^listening on //p' "$1"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$BIN" --threads "$THREADS" backend >"$WORK/backend.out" 2>&1 & PIDS+=("$!")
BACKEND=$(wait_listening "$WORK/backend.out")
[[ -n $BACKEND ]] || { echo "backend did not start" >&2; cat "$WORK/backend.out" >&2; exit 1; }
"$BIN" --threads "$THREADS" lb --backend "$BACKEND" >"$WORK/lb.out" 2>&1 & PIDS+=("$!")
BERTH=$(wait_listening "$WORK/lb.out")
[[ -n $BERTH ]] || { echo "berth lb did not start" >&2; cat "$WORK/lb.out" >&2; exit 1; }

NPORT=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes $THREADS;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-body;
  proxy_temp_path $WORK/nginx-proxy;
  fastcgi_temp_path $WORK/nginx-fastcgi;
  uwsgi_temp_path $WORK/nginx-uwsgi;
  scgi_temp_path $WORK/nginx-scgi;
  keepalive_requests 1000000;
  upstream backend { server $BACKEND; keepalive 256; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$NPORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Port \$server_port;
    }
  }
}
CONF
"$NGINX" -c "$WORK/nginx.conf" -g 'daemon off;' 2>>"$WORK/nginx-error.log" & PIDS+=("$!")
for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$NPORT) 2>/dev/null && break; sleep 0.05; done
NGINX_ADDR=127.0.0.1:$NPORT

echo "backend $BACKEND, nginx $NGINX_ADDR ($("$NGINX" -v 2>&1 | sed 's/.*version: //')), berth $BERTH;" \
     "$CONNS connections, ${SECS}s x $REPS reps, $THREADS threads each, $(nproc) cores" >&2
NGINX_MASTER=$(cat "$WORK/nginx.pid")
BERTH_PID=${PIDS[1]}
cpu_ticks() { # pids (and their children) -> user+system clock ticks so far
  local total=0 p
  for p in "$@" $(for q in "$@"; do pgrep -P "$q" || true; done); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
TCK=$(getconf CLK_TCK)
for rep in $(seq "$REPS"); do
  for side in direct nginx berth; do
    case $side in
      direct) addr=$BACKEND; pids=() ;;
      nginx) addr=$NGINX_ADDR; pids=("$NGINX_MASTER") ;;
      berth) addr=$BERTH; pids=("$BERTH_PID") ;;
    esac
    before=$(cpu_ticks "${pids[@]}")
    r=$("$BIN" --threads "$THREADS" load --target "$addr" --connections "$CONNS" --seconds "$SECS" --warmup 0 --label "$side")
    after=$(cpu_ticks "${pids[@]}")
    # The proxy's CPU time per request (microseconds): robust to other load on the machine.
    r=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); t=(int(sys.argv[2])-int(sys.argv[3]))/int(sys.argv[4]); r["proxy_cpu_us"]=t*1e6/max(r["requests"],1); print(json.dumps(r))' "$r" "$after" "$before" "$TCK")
    echo "$side $r" >>"$WORK/results"
  done
done
python3 - "$WORK/results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    side, js = line.split(" ", 1)
    rows.setdefault(side, []).append(json.loads(js))
med = {}
for side in ("direct", "nginx", "berth"):
    rs = rows[side]
    med[side] = dict(rps=statistics.median(r["rps"] for r in rs),
                     p50=statistics.median(r["p50_us"] for r in rs) / 1000,
                     p99=statistics.median(r["p99_us"] for r in rs) / 1000,
                     errors=sum(r["errors"] for r in rs),
                     cpu=statistics.median(r["proxy_cpu_us"] for r in rs),
                     samples=" ".join(f'{r["rps"]:,.0f}' for r in rs))
print(f"\n{'path':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} {'added p99':>10} {'proxy CPU us/req':>17}   samples")
for side in ("direct", "nginx", "berth"):
    m = med[side]
    add50 = m["p50"] - med["direct"]["p50"]
    add99 = m["p99"] - med["direct"]["p99"]
    extra = f"  errors: {m['errors']}" if m["errors"] else ""
    cpu = f"{m['cpu']:.1f}" if side != "direct" else "-"
    print(f"{side:<8} {m['rps']:>10,.0f} {m['p50']:>8.3f} {m['p99']:>8.3f} {add50:>10.3f} {add99:>10.3f} {cpu:>17}   {m['samples']}{extra}")
b, n = med["berth"], med["nginx"]
print(f"\nberth / nginx: throughput {b['rps'] / n['rps']:.2f}x, p50 {b['p50'] / n['p50']:.2f}x, p99 {b['p99'] / n['p99']:.2f}x, CPU per request {b['cpu'] / n['cpu']:.2f}x")
print(f"berth added p99 {b['p99'] - med['direct']['p99']:.3f} ms (target < 0.5 ms); throughput vs nginx {'met' if b['rps'] >= n['rps'] else 'NOT met'}")
PY
