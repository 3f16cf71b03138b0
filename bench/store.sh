#!/usr/bin/env bash
# The state store's backends side by side (issue #18): transaction throughput and p50/p99
# latency on SQLite and on etcd (one local member, started and removed by the benchmark), at 1,
# 16 and 64 concurrent writers, then point reads. Needs etcd (apt-get install etcd-server).
# STORE_BENCH_SECS sets each phase's length (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v etcd >/dev/null || echo "note: no etcd binary; only SQLite is measured" >&2
exec cargo bench -p berth-store --bench store
