#!/usr/bin/env bash
# bench/registry: push and pull a 4 GiB model (4 files) through the built-in
# registry of `cairn serve` (CNCF Distribution, filesystem driver) with
# bin/cairn, and print the server's peak RSS (VmHWM) against the 128 MiB
# bound, with the push and pull rates. BENCH_MODEL_MIB shrinks it.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

MIB=${BENCH_MODEL_MIB:-4096}
CAIRN=${CAIRN:-bin/cairn}
[ -x "$CAIRN" ] || go build -o "$CAIRN" ./cmd/cairn
TOOL="$CAIRN_TMP/benchtool"
go build -o "$TOOL" ./bench/models/benchtool

MODEL="$CAIRN_TMP/model"
"$TOOL" gen "$MODEL" 4 "$MIB"
echo "model: $(du -sh "$MODEL" | cut -f1) in $(ls "$MODEL" | wc -l) files"

PORT=$(free_port)
DATA="$CAIRN_TMP/data"
"$CAIRN" serve --data "$DATA" --listen "127.0.0.1:$PORT" >"$CAIRN_TMP/serve.log" 2>&1 &
SERVE=$!
on_exit "kill $SERVE"
wait_port "$PORT" 30
for _ in $(seq 50); do [ -s "$DATA/admin-token" ] && break; sleep 0.1; done
export CAIRN_TOKEN; CAIRN_TOKEN=$(cat "$DATA/admin-token")
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$SERVE/status"; }
echo "cairn serve at start: RSS $(( $(kib VmRSS) / 1024 )) MiB"

REF="127.0.0.1:$PORT/models/big:1"
t0=$(date +%s.%N)
"$CAIRN" model push "$REF" "$MODEL" --plain-http --name big --version 1 --digest-cache "" >/dev/null 2>"$CAIRN_TMP/push.err" || { cat "$CAIRN_TMP/push.err"; exit 1; }
t1=$(date +%s.%N)
echo "after push: RSS $(( $(kib VmRSS) / 1024 )) MiB, peak $(( $(kib VmHWM) / 1024 )) MiB"
"$CAIRN" model pull "$REF" -o "$CAIRN_TMP/pulled" --plain-http >/dev/null
t2=$(date +%s.%N)
cmp -s "$MODEL/model-00001-of-00004.safetensors" "$CAIRN_TMP/pulled/model-00001-of-00004.safetensors" || { echo "pulled bytes differ"; exit 1; }
peak=$(( $(kib VmHWM) / 1024 ))
awk -v m="$MIB" -v a="$t0" -v b="$t1" -v c="$t2" -v p="$peak" 'BEGIN {
  printf "push %d MiB: %.1fs (%.0f MiB/s); pull: %.1fs (%.0f MiB/s)\n", m, b-a, m/(b-a), c-b, m/(c-b)
  printf "cairn serve peak RSS over push and pull: %d MiB (bound 128 MiB: %.2f of it)\n", p, p/128 }'
