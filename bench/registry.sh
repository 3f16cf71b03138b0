#!/usr/bin/env bash
# The image registry (issue #14), side by side in one run on loopback: Berth's ECR-compatible
# registry (`berth server`, ECR token login) against Debian's docker-registry (the reference
# implementation of the distribution spec, filesystem storage, no auth), both on this machine's
# disk.
#
# 1. docker push and docker pull of a ~200 MB image of several layers (FROM scratch, one layer
#    per file of random bytes, so nothing compresses away): each registry in turn, alternating,
#    REPS times; between pushes and pulls the image is removed from Docker (and loaded back from
#    a `docker save` tarball before the next push), so every pull downloads every layer.
# 2. Blob throughput with curl: a monolithic upload (POST ...?digest=) and a download of one
#    BLOB_MB blob, REPS times.
# Prints the medians and Berth / docker-registry ratios (time ratios: below 1 is faster).
# Target (issue #14): no slower than the reference registry.
#
# Usage: bench/registry.sh [--reps N] [--layers N] [--layer-mb N] [--blob-mb N]
#   BERTH_BIN=path  use this berth binary (default: build target/release/berth)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=3
LAYERS=4
LAYER_MB=50
BLOB_MB=256
while [[ $# -gt 0 ]]; do
  case $1 in
    --reps) REPS=$2; shift ;;
    --layers) LAYERS=$2; shift ;;
    --layer-mb) LAYER_MB=$2; shift ;;
    --blob-mb) BLOB_MB=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if ! command -v docker-registry >/dev/null 2>&1; then
  echo "installing Debian's docker-registry package..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry) >&2
  # The package starts a system service on :5000; this benchmark runs its own instance.
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

if [[ -n ${BERTH_BIN:-} ]]; then
  BIN=$BERTH_BIN
else
  echo "building berth (release)..." >&2
  cargo build --release -q -p berth
  BIN=$PWD/target/release/berth
fi

WORK=$(mktemp -d)
TAG=berth-bench-registry-$$
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  docker images --format '{{.Repository}}:{{.Tag}}' | grep -F "$TAG" | xargs -r docker rmi -f >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# --- the two registries ---------------------------------------------------------------------
"$BIN" server --listen 127.0.0.1:0 --region us-east-1 --data-dir "$WORK/berth" \
  >"$WORK/berth.out" 2>"$WORK/berth.err" & PIDS+=("$!")
for _ in $(seq 400); do grep -q '^listening on' "$WORK/berth.out" 2>/dev/null && break; sleep 0.05; done
ENDPOINT=$(sed -n 's/^endpoint //p' "$WORK/berth.out")
BERTH=$(sed -n 's/^registry //p' "$WORK/berth.out")
[[ -n $BERTH && -n $ENDPOINT ]] || { echo "berth server did not start" >&2; cat "$WORK/berth.err" >&2; exit 1; }
export AWS_SHARED_CREDENTIALS_FILE=$WORK/berth/credentials AWS_CONFIG_FILE=$WORK/berth/config
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_PAGER=
aws_() { aws --endpoint-url "$ENDPOINT" "$@"; }
aws_ ecr create-repository --repository-name bench >/dev/null
PASSWORD=$(aws_ ecr get-login-password)
export DOCKER_CONFIG=$WORK/docker-config
mkdir -p "$DOCKER_CONFIG"
echo "$PASSWORD" | docker login --username AWS --password-stdin "$BERTH" >/dev/null 2>&1

RPORT=$(free_port)
REFERENCE=127.0.0.1:$RPORT
cat >"$WORK/registry.yml" <<CONF
version: 0.1
log: { level: error }
storage:
  filesystem: { rootdirectory: $WORK/reference }
  delete: { enabled: true }
http: { addr: $REFERENCE }
CONF
docker-registry serve "$WORK/registry.yml" >"$WORK/reference.log" 2>&1 & PIDS+=("$!")
for _ in $(seq 200); do curl -sf "http://$REFERENCE/v2/" >/dev/null && break; sleep 0.05; done
curl -sf "http://$REFERENCE/v2/" >/dev/null || { echo "docker-registry did not start" >&2; cat "$WORK/reference.log" >&2; exit 1; }

# --- the image --------------------------------------------------------------------------------
echo "building a $((LAYERS * LAYER_MB)) MB image of $LAYERS layers..." >&2
mkdir -p "$WORK/ctx"
{ echo "FROM scratch"; } >"$WORK/ctx/Dockerfile"
for i in $(seq "$LAYERS"); do
  head -c "$((LAYER_MB << 20))" /dev/urandom >"$WORK/ctx/layer$i"
  echo "COPY layer$i /layer$i" >>"$WORK/ctx/Dockerfile"
done
DOCKER_BUILDKIT=0 docker build -q -t "$TAG:src" "$WORK/ctx" >/dev/null 2>&1
docker save "$TAG:src" -o "$WORK/image.tar"
rm -rf "$WORK/ctx"

remove_image() { docker images --format '{{.Repository}}:{{.Tag}}' | grep -F "$TAG" | xargs -r docker rmi -f >/dev/null; }

push_pull() { # registry-address repo -> "push_seconds pull_seconds"
  local ref=$1/$2:$TAG
  docker tag "$TAG:src" "$ref"
  local t0 t1 t2
  t0=$(now); docker push -q "$ref" >/dev/null; t1=$(now)
  remove_image
  docker pull -q "$ref" >/dev/null; t2=$(now)
  remove_image
  docker load -q -i "$WORK/image.tar" >/dev/null
  echo "$(echo "$t1 - $t0" | bc) $(echo "$t2 - $t1" | bc)"
}

declare -A PUSH PULL UP DOWN
for r in $(seq "$REPS"); do
  for which in berth reference; do
    if [[ $which == berth ]]; then out=$(push_pull "$BERTH" bench); else out=$(push_pull "$REFERENCE" "bench$r"); fi
    PUSH[$which]+="${out% *} "; PULL[$which]+="${out#* } "
    echo "  rep $r $which: push ${out% *} s, pull ${out#* } s" >&2
  done
  # Each repetition pushes a new tag of the same content to Berth: its second push finds every
  # blob present, as docker-registry's fresh repository does by cross-mounting nothing. Make
  # both registries start the next repetition from empty storage instead.
  aws_ ecr batch-delete-image --repository-name bench --image-ids imageTag="$TAG" >/dev/null
  "$BIN" registry gc --data-dir "$WORK/berth" --grace-secs 0 >/dev/null 2>&1 || true
  rm -rf "$WORK/reference/docker/registry/v2/blobs"
  # docker-registry keeps repository links; a new repository name per rep avoids stale ones.
done

# --- blob throughput --------------------------------------------------------------------------
head -c "$((BLOB_MB << 20))" /dev/urandom >"$WORK/blob"
DIGEST=sha256:$(sha256sum "$WORK/blob" | cut -d' ' -f1)
blob_rt() { # base-url repo auth... -> "up_MBps down_MBps"
  local base=$1 repo=$2; shift 2
  local loc up down
  loc=$(curl -sS -o /dev/null -D - -X POST "$@" "$base/v2/$repo/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  [[ $loc == http* ]] || loc=$base$loc
  case $loc in *\?*) loc="$loc&digest=$DIGEST" ;; *) loc="$loc?digest=$DIGEST" ;; esac
  up=$(curl -sS -o /dev/null -w '%{speed_upload}' -X PUT "$@" -H 'Content-Type: application/octet-stream' \
    --data-binary @"$WORK/blob" "$loc")
  down=$(curl -sS -L -o /dev/null -w '%{speed_download}' "$@" "$base/v2/$repo/blobs/$DIGEST")
  echo "$(echo "$up / 1048576" | bc -l) $(echo "$down / 1048576" | bc -l)"
}
for r in $(seq "$REPS"); do
  out=$(blob_rt "http://$BERTH" bench -u "AWS:$PASSWORD")
  UP[berth]+="${out% *} "; DOWN[berth]+="${out#* } "
  out=$(blob_rt "http://$REFERENCE" "blob$r")
  UP[reference]+="${out% *} "; DOWN[reference]+="${out#* } "
  # Start each upload from nothing: drop the blob from both.
  "$BIN" registry gc --data-dir "$WORK/berth" --grace-secs 0 >/dev/null 2>&1 || true
  rm -rf "$WORK/reference/docker/registry/v2/blobs"
done

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }
echo
echo "registry benchmark: $LAYERS x $LAYER_MB MB image, $BLOB_MB MB blob, median of $REPS (one machine, loopback)"
printf '%-28s %12s %16s %8s\n' "" "berth" "docker-registry" "ratio"
for m in push pull; do
  if [[ $m == push ]]; then b=$(med "${PUSH[berth]}"); d=$(med "${PUSH[reference]}"); else b=$(med "${PULL[berth]}"); d=$(med "${PULL[reference]}"); fi
  printf '%-28s %11.2fs %15.2fs %7.2fx\n' "docker $m (time)" "$b" "$d" "$(ratio "$b" "$d")"
done
for m in upload download; do
  if [[ $m == upload ]]; then b=$(med "${UP[berth]}"); d=$(med "${UP[reference]}"); else b=$(med "${DOWN[berth]}"); d=$(med "${DOWN[reference]}"); fi
  printf '%-28s %9.0fMB/s %13.0fMB/s %7.2fx\n' "blob $m (throughput)" "$b" "$d" "$(ratio "$b" "$d")"
done
