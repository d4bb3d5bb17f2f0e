#!/usr/bin/env bash
# Datasets benchmark (issue 5): cairn data push vs rclone copy to one MinIO,
# unchanged re-push, a 1 MiB edit inside a 1 GiB file, and chunking
# throughput vs restic backup into a local repository. Prints the ratios.
#
#   BENCH_SCALE=1    full size: 2 GiB in 10,000 files, one of them 1 GiB (default)
#   BENCH_SCALE=0.1  a tenth of the bytes and files (quick check)
#   BENCH_ROUNDS=2   cold pushes per tool, taken in turns; the best counts
set -euo pipefail
cd "$(dirname "$0")/../.."
export CAIRN_TMP="${BENCH_TMP:-$(mktemp -d /tmp/cairn-bench-datasets.XXXXXX)}"
source scripts/lib.sh
export XDG_CACHE_HOME="$CAIRN_TMP/cache" # the push cache of these runs only

scale=${BENCH_SCALE:-1}
rounds=${BENCH_ROUNDS:-2}
total=$(awk -v s="$scale" 'BEGIN{printf "%.0f", 2*1024*1024*1024*s}')
files=$(awk -v s="$scale" 'BEGIN{n=int(10000*s); if(n<2)n=2; print n}')
big=$(awk -v s="$scale" 'BEGIN{printf "%.0f", 1024*1024*1024*s}')
cairn=${CAIRN_BIN:-bin/cairn}
[ -x "$cairn" ] || { echo "build bin/cairn first (make build)"; exit 1; }

apt_install rclone restic
source scripts/services/minio.sh

step "generate $files files, $total bytes (BENCH_SCALE=$scale)"
data="$CAIRN_TMP/data"
go run ./bench/datasets/gen tree "$data" "$total" "$files" "$big"
du -sh "$data"

export AWS_ACCESS_KEY_ID=$CAIRN_TEST_MINIO_USER AWS_SECRET_ACCESS_KEY=$CAIRN_TEST_MINIO_PASSWORD
export RCLONE_CONFIG_MINIO_TYPE=s3 RCLONE_CONFIG_MINIO_PROVIDER=Minio RCLONE_CONFIG_MINIO_ENV_AUTH=false
export RCLONE_CONFIG_MINIO_ENDPOINT="http://$CAIRN_TEST_MINIO"
export RCLONE_CONFIG_MINIO_ACCESS_KEY_ID=$CAIRN_TEST_MINIO_USER RCLONE_CONFIG_MINIO_SECRET_ACCESS_KEY=$CAIRN_TEST_MINIO_PASSWORD
rclone_flags=(--transfers 16 --checkers 16 --config /dev/null -q)
# rclone refuses a custom CA bundle with its own transport; MinIO is plain HTTP.
rclone() { env -u AWS_CA_BUNDLE rclone "$@"; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.3f", b-a}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }
minof() { awk -v a="$1" -v b="$2" 'BEGIN{print (b=="" || a<b) ? a : b}'; }
store() { echo "s3://$1?endpoint=$CAIRN_TEST_MINIO&insecure=1"; }
json_field() { sed -n "s/.*\"$1\": *\\([0-9]*\\).*/\\1/p"; }

# Chunking first: it also puts some time between writing the data and the
# pushes to MinIO, as in real use (the push cache ignores files changed in
# the last 2 s, see registry/datasets/cache.go).
step "chunking throughput: cairn push to a folder vs restic backup"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$CAIRN_TMP/restic" RESTIC_CACHE_DIR="$CAIRN_TMP/restic-cache"
restic init -q
t0=$(now)
restic backup -q "$data" >/dev/null
t_restic=$(elapsed "$t0")
echo "restic backup (cold, local repo):      ${t_restic}s"
t0=$(now)
"$cairn" data push "$data" --store "file://$CAIRN_TMP/folder-store" >/dev/null
t_local=$(elapsed "$t0")
echo "cairn data push (cold, local folder):  ${t_local}s"

best_cairn= best_rclone=
for ((r = 1; r <= rounds; r++)); do
  run_cairn() {
    local t0; t0=$(now)
    "$cairn" data push "$data" --store "$(store "cairn-$r")" >/dev/null
    local t; t=$(elapsed "$t0"); echo "round $r: cairn data push (cold)  ${t}s"
    best_cairn=$(minof "$t" "$best_cairn")
  }
  run_rclone() {
    rclone mkdir "minio:rclone-$r" "${rclone_flags[@]}"
    local t0; t0=$(now)
    rclone copy "$data" "minio:rclone-$r/data" "${rclone_flags[@]}"
    local t; t=$(elapsed "$t0"); echo "round $r: rclone copy (cold)      ${t}s"
    best_rclone=$(minof "$t" "$best_rclone")
  }
  step "cold push, round $r"
  if ((r % 2)); then run_cairn; run_rclone; else run_rclone; run_cairn; fi
done

step "unchanged re-push"
t0=$(now)
out=$("$cairn" data push "$data" --store "$(store cairn-1)" -o json)
t_repush=$(elapsed "$t0")
echo "cairn data push (unchanged): ${t_repush}s, uploaded $(json_field uploadedBytes <<<"$out") bytes"
t0=$(now)
"$cairn" data push "$data" --store "$(store cairn-1)" --no-cache >/dev/null
t_nocache=$(elapsed "$t0")
echo "cairn data push --no-cache (unchanged, reads and hashes everything): ${t_nocache}s"
t0=$(now)
rclone copy "$data" "minio:rclone-1/data" "${rclone_flags[@]}"
t_rclone_again=$(elapsed "$t0")
echo "rclone copy (unchanged):     ${t_rclone_again}s"

step "1 MiB edit in the middle of big.bin ($big bytes)"
go run ./bench/datasets/gen edit "$data/big.bin" 42
t0=$(now)
out=$("$cairn" data push "$data" --store "$(store cairn-1)" -o json)
t_edit=$(elapsed "$t0")
up_edit=$(json_field uploadedBytes <<<"$out")
echo "cairn data push (edited):    ${t_edit}s, uploaded $up_edit bytes"
t0=$(now)
rclone copy "$data" "minio:rclone-1/data" "${rclone_flags[@]}"
t_rclone_edit=$(elapsed "$t0")
echo "rclone copy (edited):        ${t_rclone_edit}s"

mib=$(awk -v b="$total" 'BEGIN{printf "%.0f", b/1048576}')
step "ratios (BENCH_SCALE=$scale: $files files, $mib MiB)"
printf '%-52s %8s  %s\n' "cold push cairn / rclone" "$(ratio "$best_cairn" "$best_rclone")" "(goal <= 1.1; ${best_cairn}s vs ${best_rclone}s)"
printf '%-52s %8s  %s\n' "unchanged re-push cairn / rclone cold copy" "$(ratio "$t_repush" "$best_rclone")" "(goal <= 0.1; ${t_repush}s)"
printf '%-52s %8s  %s\n' "unchanged re-push --no-cache / rclone cold copy" "$(ratio "$t_nocache" "$best_rclone")" "(${t_nocache}s: every byte read and hashed)"
printf '%-52s %8s  %s\n' "unchanged re-push cairn / rclone unchanged copy" "$(ratio "$t_repush" "$t_rclone_again")" "(${t_rclone_again}s)"
printf '%-52s %8s  %s\n' "1 MiB edit re-push cairn / rclone" "$(ratio "$t_edit" "$t_rclone_edit")" "(uploaded $up_edit bytes)"
printf '%-52s %8s  %s\n' "chunking: cairn local push / restic backup (time)" "$(ratio "$t_local" "$t_restic")" "(goal <= 1; $(awk -v b="$total" -v t="$t_local" 'BEGIN{printf "%.0f", b/1048576/t}') vs $(awk -v b="$total" -v t="$t_restic" 'BEGIN{printf "%.0f", b/1048576/t}') MiB/s)"
