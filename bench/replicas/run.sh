#!/usr/bin/env bash
# make bench: past one machine. 3 `cairn serve` replicas on one PostgreSQL,
# simulated targets spread over them (enroll, 304 polls, status reports,
# webhook → desired states, long-polls woken on every replica). Aims at
# 1,000,000 targets; enrollment stops after REPLICA_ENROLL_BUDGET (default
# 10m) and the run goes on with the targets enrolled by then, so the figures
# say where the limit is on this machine. REPLICA_TARGETS=N to aim lower.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
[ -x bin/cairn ] || go build -o bin/cairn ./cmd/cairn
go build -o "$CAIRN_TMP/bench-fleet" ./bench/fleet
ulimit -n 65536 2>/dev/null || true
if [ -z "${CAIRN_TEST_POSTGRES_URL:-}" ]; then
  source scripts/services/postgres.sh
fi
"$CAIRN_TMP/bench-fleet" -cairn bin/cairn -replicas 3 -database "$CAIRN_TEST_POSTGRES_URL" \
  -targets "${REPLICA_TARGETS:-1000000}" -enroll-budget "${REPLICA_ENROLL_BUDGET:-10m}" -workers 128 "$@"
