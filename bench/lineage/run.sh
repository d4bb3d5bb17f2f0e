#!/usr/bin/env bash
# Lineage on SQLite: build a graph of 1,000,000 edges (10k models, 1k
# datasets, 100k targets, deployments over a year), then print p50/p99 of
# upstream/downstream depth-5 walks (goal p99 ≤ 5 ms), At (goal p99 ≤ 1 ms)
# and Where over random queries.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="${CAIRN_TMP:-$(mktemp -d)}"
go build -o "$tmp/lineage-bench" ./bench/lineage
"$tmp/lineage-bench" -db "$tmp/lineage-bench.db" "$@"
rm -f "$tmp/lineage-bench.db" "$tmp/lineage-bench.db-wal" "$tmp/lineage-bench.db-shm"
