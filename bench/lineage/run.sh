#!/usr/bin/env bash
# Lineage on SQLite and on PostgreSQL: build a graph of 1,000,000 edges (10k
# models, 1k datasets, 100k targets, deployments over a year), then print
# p50/p99 of upstream/downstream depth-5 walks (goal p99 ≤ 5 ms), At (goal
# p99 ≤ 1 ms) and Where (goal p99 ≤ 10 ms) over random queries, answered by
# SQL walks and by the in-memory index, side by side.
# LINEAGE_EDGES=N for a smaller graph.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
go build -o "$CAIRN_TMP/lineage-bench" ./bench/lineage
edges="${LINEAGE_EDGES:-1000000}"
rm -f "$CAIRN_TMP/lineage-sqlite.tsv" "$CAIRN_TMP/lineage-postgres.tsv"
"$CAIRN_TMP/lineage-bench" -edges "$edges" -db "$CAIRN_TMP/lineage-bench.db" -summary "$CAIRN_TMP/lineage-sqlite.tsv" "$@"
rm -f "$CAIRN_TMP/lineage-bench.db" "$CAIRN_TMP/lineage-bench.db-wal" "$CAIRN_TMP/lineage-bench.db-shm"
if [ -z "${CAIRN_TEST_POSTGRES_URL:-}" ]; then
  source scripts/services/postgres.sh
fi
"$CAIRN_TMP/lineage-bench" -edges "$edges" -db "$CAIRN_TEST_POSTGRES_URL" -summary "$CAIRN_TMP/lineage-postgres.tsv" "$@"
bash bench/sidebyside.sh "lineage, $edges edges, memory index" "$CAIRN_TMP/lineage-sqlite.tsv" "$CAIRN_TMP/lineage-postgres.tsv"
