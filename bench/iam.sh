#!/usr/bin/env bash
# Authorization cost (issue #16): the same signed ECS requests from the administrator (the
# bootstrap key: no policy evaluated) and from an IAM user with 20 attached managed policies
# plus a group's and an inline one, against one release `berth server`, side by side.
#
# Prints req/s, p50 and p99 for DescribeTaskDefinition and ListTaskDefinitions as each
# principal, and the p50/p99 difference (the cost of authorization per request: the policy
# set is parsed once per change and cached, so this is evaluation plus the resource ARNs).
# Everything it starts is stopped on exit.
#
# Each pair runs at 1 connection (the unloaded latency: the cost shows as is) and at
# BENCH_CONNECTIONS (default 16: the cost under load, on a 2-core machine mostly queueing).
#
# Usage: bench/iam.sh [seconds-per-run (default 10)]; builds into CARGO_TARGET_DIR (default
# target/), BENCH_SKIP_BUILD=1 uses the binaries already there.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${BENCH_CONNECTIONS:-16}
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")

[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release -q -p berth -p berth-bench
BERTH=$TARGET/release/berth
LOADGEN=$TARGET/release/berth-loadgen

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

BERTH_LOG=warn "$BERTH" server --data-dir "$WORK/berth" --listen 127.0.0.1:0 --account-id 123456789012 \
  >"$WORK/berth.out" 2>"$WORK/berth.err" &
PIDS+=("$!")
for _ in $(seq 100); do grep -q "listening on" "$WORK/berth.out" 2>/dev/null && break; sleep 0.1; done
EP="http://$(sed -n 's/^listening on //p' "$WORK/berth.out")"
ADMIN="$WORK/berth/credentials"
export AWS_SHARED_CREDENTIALS_FILE="$ADMIN" AWS_CONFIG_FILE="$WORK/berth/config" AWS_PAGER=""
iam() { aws --endpoint-url "$EP" iam "$@"; }

"$LOADGEN" --endpoint "$EP" --credentials "$ADMIN" --op setup
"$LOADGEN" --endpoint "$EP" --credentials "$ADMIN" --op fill --count 100 --connections 4 >/dev/null

# The user: 20 attached policies (19 about other services and resources, the last one allows
# the benchmark's calls), a group with a policy, an inline deny on something else.
iam create-user --user-name bench >/dev/null
for i in $(seq 1 19); do
  doc='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecs:DescribeServices","ecs:UpdateService"],"Resource":"arn:aws:ecs:*:*:service/c'$i'/*"},{"Effect":"Allow","Action":"logs:*","Resource":"arn:aws:logs:*:*:log-group:/team'$i'/*","Condition":{"StringEquals":{"aws:PrincipalTag/team":"t'$i'"}}}]}'
  arn=$(iam create-policy --policy-name "p$i" --policy-document "$doc" --query Policy.Arn --output text)
  iam attach-user-policy --user-name bench --policy-arn "$arn"
done
doc='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecs:DescribeTaskDefinition","ecs:ListTaskDefinitions"],"Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"},"IpAddress":{"aws:SourceIp":"127.0.0.0/8"}}}]}'
arn=$(iam create-policy --policy-name p20 --policy-document "$doc" --query Policy.Arn --output text)
iam attach-user-policy --user-name bench --policy-arn "$arn"
iam create-group --group-name bench >/dev/null
iam put-group-policy --group-name bench --policy-name g --policy-document \
  '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:Describe*","Resource":"*"}]}'
iam add-user-to-group --group-name bench --user-name bench
iam put-user-policy --user-name bench --policy-name d --policy-document \
  '{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ecs:DeleteCluster","Resource":"*"}]}'
key=$(iam create-access-key --user-name bench --query 'AccessKey.[AccessKeyId,SecretAccessKey]' --output text)
USER="$WORK/user-credentials"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' $key >"$USER"
chmod 600 "$USER"

printf '\n%-24s %5s %-8s %10s %9s %9s\n' "operation" "conns" "caller" "req/s" "p50 ms" "p99 ms"
for conns in 1 "$CONNS"; do
  for op in describe list; do
    case $op in describe) name=DescribeTaskDefinition;; list) name=ListTaskDefinitions;; esac
    a=$("$LOADGEN" --endpoint "$EP" --credentials "$ADMIN" --op "$op" --seconds "$SECS" --connections "$conns" --label admin)
    u=$("$LOADGEN" --endpoint "$EP" --credentials "$USER" --op "$op" --seconds "$SECS" --connections "$conns" --label user)
    python3 - "$name" "$conns" "$a" "$u" <<'PY'
import json, sys
name, conns, a, u = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
for who, r in (("admin", a), ("user", u)):
    print(f'{name:<24} {conns:>5} {who:<8} {r["rps"]:>10,.0f} {r["p50_us"]/1000:>9.3f} {r["p99_us"]/1000:>9.3f}'
          + (f'  (errors: {r["errors"]})' if r["errors"] else ''))
print(f'{"":<24} {"":>5} {"cost":<8} {"":>10} {(u["p50_us"]-a["p50_us"])/1000:>9.3f} {(u["p99_us"]-a["p99_us"])/1000:>9.3f}  (user - admin)')
PY
  done
done
