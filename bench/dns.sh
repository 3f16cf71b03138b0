#!/usr/bin/env bash
# Berth's DNS server against dnsmasq (issue #17), side by side in one run on loopback: the same
# records (zone bench.local, SERVICES services with INSTANCES instances each: A records, SRV
# records and their targets' A records) served by berth-dns-bench (Berth's DNS data plane,
# crates/dns, release build, 2 worker threads) and by Debian's dnsmasq (the same records as
# host-record / srv-host lines, no upstream, cache off), each loaded in turn by dnsperf
# (Debian's package) with the same query file (A and SRV of every service, plus names unknown
# in the zone: NXDOMAIN), REPS times alternating. Prints each run's queries/s and average
# latency, the medians and the Berth / dnsmasq ratios.
#
# The server, dnsperf and (for dnsmasq, single-threaded) nothing else share the machine's cores:
# on the project's 2-core machines say so with the figures.
#
# Usage: bench/dns.sh [--seconds N] [--reps N] [--clients N] [--services N] [--instances N]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=10
REPS=3
CLIENTS=4
SERVICES=500
INSTANCES=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) SECS=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --services) SERVICES=$2; shift ;;
    --instances) INSTANCES=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if ! command -v dnsperf >/dev/null || ! [[ -x /usr/sbin/dnsmasq ]]; then
  echo "installing Debian's dnsperf and dnsmasq-base packages..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf dnsmasq-base) >&2
fi

echo "building berth-dns-bench (release)..." >&2
cargo build --release -q -p berth-dns --bin berth-dns-bench
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/berth-dns-bench

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

BERTH_PORT=$(free_port)
"$BIN" --listen "127.0.0.1:$BERTH_PORT" --services "$SERVICES" --instances "$INSTANCES" \
  --dnsmasq-conf "$WORK/dnsmasq.conf" --queries "$WORK/queries" >"$WORK/berth.out" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/berth.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$WORK/berth.out" || { echo "berth-dns-bench did not start" >&2; exit 1; }

DNSMASQ_PORT=$(free_port)
/usr/sbin/dnsmasq --keep-in-foreground --no-daemon --conf-file="$WORK/dnsmasq.conf" \
  --port="$DNSMASQ_PORT" --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
  --local=/bench.local/ --cache-size=0 --local-ttl=60 --user=root --pid-file= \
  >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)
sleep 0.5

# The two answer the same records (spot check: response code and answer count).
python3 - "$BERTH_PORT" "$DNSMASQ_PORT" <<'PY' >&2
import random, socket, struct, sys
def ask(port, name, qtype):
    q = struct.pack(">HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    q += struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    s.sendto(q, ("127.0.0.1", port)); r = s.recv(4096)
    return r[3] & 0xF, struct.unpack(">H", r[6:8])[0]
bad = 0
for name, t in [("svc1.bench.local", 1), ("svc1.bench.local", 33), ("missing0.bench.local", 1)]:
    b, d = ask(int(sys.argv[1]), name, t), ask(int(sys.argv[2]), name, t)
    print(f"check {name} type {t}: berth (rcode, answers) {b}, dnsmasq {d}")
    bad += b != d
sys.exit(1 if bad else 0)
PY

run() { # name port -> "qps avg_ms"
  dnsperf -s 127.0.0.1 -p "$2" -d "$WORK/queries" -l "$SECS" -c "$CLIENTS" -q 200 -T 1 2>&1 |
    awk '/Queries per second/ {q=$4} /Average Latency/ {l=$4*1000} /Queries completed/ {c=$3} /Queries lost/ {lost=$3}
         END {printf "%.0f %.3f %s %s\n", q, l, c, lost}'
}

printf '%-8s %4s %12s %14s %12s %8s\n' server rep 'queries/s' 'avg lat ms' completed lost
declare -a BQ DQ BL DL
for rep in $(seq "$REPS"); do
  read -r q l c lost < <(run berth "$BERTH_PORT"); BQ+=("$q"); BL+=("$l")
  printf '%-8s %4s %12s %14s %12s %8s\n' berth "$rep" "$q" "$l" "$c" "$lost"
  read -r q l c lost < <(run dnsmasq "$DNSMASQ_PORT"); DQ+=("$q"); DL+=("$l")
  printf '%-8s %4s %12s %14s %12s %8s\n' dnsmasq "$rep" "$q" "$l" "$c" "$lost"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
bq=$(median "${BQ[@]}"); dq=$(median "${DQ[@]}"); bl=$(median "${BL[@]}"); dl=$(median "${DL[@]}")
echo
echo "median: berth $bq q/s, $bl ms avg; dnsmasq $dq q/s, $dl ms avg"
awk -v bq="$bq" -v dq="$dq" -v bl="$bl" -v dl="$dl" \
  'BEGIN {printf "ratio berth/dnsmasq: throughput %.2fx, average latency %.2fx\n", bq/dq, bl/dl}'
echo "($SERVICES services x $INSTANCES instances, $CLIENTS dnsperf clients, ${SECS}s x $REPS, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
