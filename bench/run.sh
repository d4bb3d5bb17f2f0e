#!/usr/bin/env bash
# make bench: every bench/*/run.sh in turn; each prints its ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
for b in bench/*/run.sh; do
  [ -e "$b" ] || continue
  step "bench $(basename "$(dirname "$b")")"
  bash "$b"
done
