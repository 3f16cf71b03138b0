#!/usr/bin/env bash
# The API's hot read path, before and after, side by side in one run: a baseline `berth
# server` built from a git revision and the working tree's, each loaded in turn (alternating,
# REPS times) with the same SigV4-signed DescribeTaskDefinition and ListTaskDefinitions
# requests from berth-loadgen (the project's closed-loop Rust generator, 16 connections, on the
# same 2-core machine). Every request is signed and verified. Prints requests/s, p50 and p99,
# the median over the repetitions and the ratio new / baseline.
#
# Target (issue #9): at least 40,000 signed DescribeTaskDefinition requests/s.
#
# Usage: bench/hot-path.sh [--baseline REV] [--baseline-bin PATH] [--seconds N] [--reps N]
#   --baseline REV       git revision of the baseline (default 09da84e), built in a git worktree
#                        under target/bench-baseline with its own CARGO_TARGET_DIR (release)
#   --baseline-bin PATH  use this berth binary as the baseline instead
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BASE_REV=09da84e
BASE_BIN=""
SECS=8
REPS=3
CONNS=${BENCH_CONNECTIONS:-16}
while [[ $# -gt 0 ]]; do
  case $1 in
    --baseline) BASE_REV=$2; shift ;;
    --baseline-bin) BASE_BIN=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --reps) REPS=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

echo "building the working tree's berth and berth-loadgen (release)..." >&2
cargo build --release -q -p berth -p berth-bench
NEW_BIN=$ROOT/target/release/berth
LOADGEN=$ROOT/target/release/berth-loadgen
if [[ -z $BASE_BIN ]]; then
  WT=$ROOT/target/bench-baseline/src
  if [[ ! -d $WT ]]; then git worktree add --detach "$WT" "$BASE_REV" >&2; fi
  git -C "$WT" checkout -q --detach "$BASE_REV"
  echo "building the baseline $BASE_REV (release; the first time takes minutes)..." >&2
  (cd "$WT" && CARGO_TARGET_DIR=$ROOT/target/bench-baseline/target cargo build --release -q -p berth)
  BASE_BIN=$ROOT/target/bench-baseline/target/release/berth
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

start() { # name binary -> sets EP_<name> and CREDS_<name>
  local name=$1 bin=$2
  BERTH_LOG=warn "$bin" server --data-dir "$WORK/$name" --listen 127.0.0.1:0 >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=("$!")
  for _ in $(seq 200); do grep -q "listening on" "$WORK/$name.out" 2>/dev/null && break; sleep 0.05; done
  grep -q "listening on" "$WORK/$name.out" || { echo "$name server did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1; }
  local ep="http://$(sed -n 's/^listening on //p' "$WORK/$name.out")"
  "$LOADGEN" --endpoint "$ep" --credentials "$WORK/$name/credentials" --op setup
  "$LOADGEN" --endpoint "$ep" --credentials "$WORK/$name/credentials" --op fill --count 100 --connections 4 >/dev/null
  printf -v "EP_$name" '%s' "$ep"
}
start base "$BASE_BIN"
start new "$NEW_BIN"

printf '\n%-24s %-8s %12s %9s %9s\n' operation server "req/s" "p50 ms" "p99 ms"
for op in describe list; do
  for rep in $(seq "$REPS"); do
    for side in base new; do
      ep_var="EP_$side"
      r=$("$LOADGEN" --endpoint "${!ep_var}" --credentials "$WORK/$side/credentials" --op "$op" \
          --seconds "$SECS" --connections "$CONNS" --label "$side")
      echo "$op $side $r" >>"$WORK/results"
    done
  done
done
python3 - "$WORK/results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    op, side, js = line.split(" ", 2)
    rows.setdefault((op, side), []).append(json.loads(js))
names = {"describe": "DescribeTaskDefinition", "list": "ListTaskDefinitions"}
for op in ("describe", "list"):
    med = {}
    for side in ("base", "new"):
        rs = rows[(op, side)]
        rps = statistics.median(r["rps"] for r in rs)
        p50 = statistics.median(r["p50_us"] for r in rs) / 1000
        p99 = statistics.median(r["p99_us"] for r in rs) / 1000
        errors = sum(r["errors"] for r in rs)
        med[side] = rps
        label = "baseline" if side == "base" else "new"
        samples = " ".join(f'{r["rps"]:,.0f}' for r in rs)
        print(f"{names[op]:<24} {label:<8} {rps:>12,.0f} {p50:>9.2f} {p99:>9.2f}   samples: {samples}"
              + (f"  errors: {errors}" if errors else ""))
    print(f"{'':<24} {'ratio':<8} {med['new'] / med['base']:>11.2f}x")
PY
