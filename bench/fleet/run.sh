#!/usr/bin/env bash
# make bench: the fleet API under 100,000 simulated targets against one
# `cairn serve` (SQLite, embedded defaults) on loopback. Prints server RSS,
# the 304 poll throughput against a bare net/http handler, status report
# throughput and the time from a Git webhook to every desired state.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x bin/cairn ] || go build -o bin/cairn ./cmd/cairn
go build -o "${CAIRN_TMP:-/tmp}/bench-fleet" ./bench/fleet
ulimit -n 65536 2>/dev/null || true
"${CAIRN_TMP:-/tmp}/bench-fleet" -cairn bin/cairn -targets "${FLEET_TARGETS:-100000}" "$@"
