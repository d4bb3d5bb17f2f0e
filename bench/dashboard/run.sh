#!/usr/bin/env bash
# Dashboard on SQLite with 100,000 reporting targets: server time of the
# fleet page (goal: first page under 300 ms) and the cost of recording one
# status report per target in the metrics history. DASHBOARD_TARGETS=N for fewer.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
go build -o "$CAIRN_TMP/dashboard-bench" ./bench/dashboard
"$CAIRN_TMP/dashboard-bench" -targets "${DASHBOARD_TARGETS:-100000}" "$@"
