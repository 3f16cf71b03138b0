#!/usr/bin/env bash
# Builds Berth's demo image berth-demo:latest (or the tag given as $1): a statically linked
# `hello` (crates/demo-app) on `FROM scratch` (crates/demo-app/Dockerfile), through the Docker
# Engine API, so neither the docker CLI nor BuildKit nor a registry is needed.
#
# The binary is built with
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p berth-demo \
#     --bin hello --target "$(uname -m)-unknown-linux-gnu"
# into ${CARGO_TARGET_DIR:-target}/demo-static (static glibc; debug info off, stripped).
# The image is rebuilt only when that binary changed.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
if [[ $# -gt 0 ]]; then args+=(--tag "$1"); fi
exec cargo run --quiet -p berth-runtime-docker --bin berth-demo-image -- "${args[@]}"
