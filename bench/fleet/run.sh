#!/usr/bin/env bash
# make bench: the fleet API under 100,000 simulated targets against one
# `cairn serve` on loopback, with its state on SQLite (embedded defaults) and
# then on PostgreSQL. Prints server RSS, the 304 poll throughput against a
# bare net/http handler, status report throughput and the time from a Git
# webhook to every desired state. FLEET_TARGETS=N for a smaller fleet.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
[ -x bin/cairn ] || go build -o bin/cairn ./cmd/cairn
go build -o "$CAIRN_TMP/bench-fleet" ./bench/fleet
ulimit -n 65536 2>/dev/null || true
rm -f "$CAIRN_TMP/fleet-sqlite.tsv" "$CAIRN_TMP/fleet-postgres.tsv"
"$CAIRN_TMP/bench-fleet" -cairn bin/cairn -targets "${FLEET_TARGETS:-100000}" -summary "$CAIRN_TMP/fleet-sqlite.tsv" "$@"
if [ -z "${CAIRN_TEST_POSTGRES_URL:-}" ]; then
  source scripts/services/postgres.sh
fi
"$CAIRN_TMP/bench-fleet" -cairn bin/cairn -targets "${FLEET_TARGETS:-100000}" -database "$CAIRN_TEST_POSTGRES_URL" -summary "$CAIRN_TMP/fleet-postgres.tsv" "$@"
bash bench/sidebyside.sh "fleet, ${FLEET_TARGETS:-100000} targets" "$CAIRN_TMP/fleet-sqlite.tsv" "$CAIRN_TMP/fleet-postgres.tsv"
