#!/usr/bin/env bash
# make bench: past one machine. 3 `cairn serve` replicas on one PostgreSQL,
# simulated targets spread over them (target i enrolls with, polls and
# reports to replica i mod 3): enroll, first rollout, full GETs, 304 polls,
# status reports, webhook → desired states on every replica (long-polls
# woken on each). Prints, per phase, the rates per replica and in all, the
# CPU of each replica, of the bench client and of the PostgreSQL backends,
# PostgreSQL connections, RSS per replica, and what bounded the phase.
#
# Aims at 1,000,000 targets; enrollment stops after REPLICA_ENROLL_BUDGET
# (default 6m) and the run goes on with the targets enrolled by then, so the
# figures say where the limit is on this machine; the first rollout and the
# webhook's must each be done within REPLICA_ROLLOUT_BUDGET (default 4m).
# The whole run stays within about 15 minutes. REPLICA_TARGETS=N to aim
# lower.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
[ -x bin/cairn ] || go build -o bin/cairn ./cmd/cairn
go build -o "$CAIRN_TMP/bench-fleet" ./bench/fleet
ulimit -n 65536 2>/dev/null || true
if [ -z "${CAIRN_TEST_POSTGRES_URL:-}" ]; then
  source scripts/services/postgres.sh
fi
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
"$CAIRN_TMP/bench-fleet" -cairn bin/cairn -replicas 3 -database "$CAIRN_TEST_POSTGRES_URL" \
  -targets "${REPLICA_TARGETS:-1000000}" -enroll-budget "${REPLICA_ENROLL_BUDGET:-6m}" \
  -rollout-budget "${REPLICA_ROLLOUT_BUDGET:-4m}" -workers 128 "$@"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
