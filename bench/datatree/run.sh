#!/usr/bin/env bash
# bench/datatree: cairn data ls and data diff of a 10-million-entry dataset
# tree (BENCH_TREE_ENTRIES to change it; one file in 16 differs between the
# two versions) and the peak RSS of each against the 256 MiB bound.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

N=${BENCH_TREE_ENTRIES:-10000000}
CAIRN=${CAIRN:-bin/cairn}
[ -x "$CAIRN" ] || go build -o "$CAIRN" ./cmd/cairn
GEN="$CAIRN_TMP/gentree"
go build -o "$GEN" ./bench/datatree/gentree
STORE="$CAIRN_TMP/store"
A=$("$GEN" "$STORE" "$N" $((N / 1000 + 1)) 1)
B=$("$GEN" "$STORE" "$N" $((N / 1000 + 1)) 2)
echo "tree: $N entries, $(du -sh "$STORE" | cut -f1) for two versions"

# measure NAME CMD…: wall and CPU time and peak RSS (VmHWM, polled).
measure() {
  local name=$1; shift
  local t0 t1 hwm=0 v
  t0=$(date +%s.%N)
  "$@" >/dev/null &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    v=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$v" ] && hwm=$v
    sleep 0.05
  done
  wait "$pid"
  t1=$(date +%s.%N)
  awk -v n="$name" -v a="$t0" -v b="$t1" -v k="$hwm" -v e="$N" 'BEGIN {
    printf "%-18s %6.1fs  %4.0f k entries/s  peak RSS %4d MiB (bound 256 MiB: %.2f of it)\n", n, b-a, e/(b-a)/1000, k/1024, k/1024/256 }'
}
measure "data ls" "$CAIRN" data ls "$A" --store "file://$STORE"
measure "data ls -o json" "$CAIRN" data ls "$A" --store "file://$STORE" -o json
measure "data diff" "$CAIRN" data diff "$A" "$B" --store "file://$STORE"
