#!/usr/bin/env bash
# bench/plan: time of `cairn plan`'s computation for 1,000 releases × 100,000
# targets on one core (GOMAXPROCS=1), with and without policies.
set -euo pipefail
cd "$(dirname "$0")/../.."
GOMAXPROCS=1 go run ./bench/plan "$@"
