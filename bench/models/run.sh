#!/usr/bin/env bash
# bench/models: push and pull the same 2 GiB model (4 files, deterministic
# random bytes) to Debian's docker-registry on loopback with bin/cairn and with
# oras (installed into $GOBIN when missing), in turns, 3 rounds; prints
# cairn's time over oras's for push and for pull separately, side by side,
# cairn's peak RSS, and the CPU seconds the registry itself spent during each
# run (on a small machine the registry's hashing is much of the wall time). BENCH_MODEL_MIB and BENCH_ROUNDS shrink it for a
# quick look.
#
# Both tools run from copies installed into the bench's folder, as a
# package or `install` puts them. Run straight from the linker's output, a
# binary's pages sit in the page cache as the linker wrote them, and on
# Linux 6.x large folios map in pieces of up to 2 MiB on first touch: the
# same `cairn help` then shows 70+ MB of file-backed RSS instead of ~38 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

ORAS_VERSION=v1.3.6
MIB=${BENCH_MODEL_MIB:-2048}
ROUNDS=${BENCH_ROUNDS:-3}
CAIRN=${CAIRN:-bin/cairn}
[ -x "$CAIRN" ] || go build -o "$CAIRN" ./cmd/cairn
go_tool oras "oras.land/oras/cmd/oras@$ORAS_VERSION"
echo "oras: $(go version -m "$(command -v oras)" | awk '$1 == "mod" {print $3}')"
mkdir -p "$CAIRN_TMP/bin"
install -m 0755 "$CAIRN" "$CAIRN_TMP/bin/cairn"
install -m 0755 "$(command -v oras)" "$CAIRN_TMP/bin/oras"
CAIRN="$CAIRN_TMP/bin/cairn"
ORAS="$CAIRN_TMP/bin/oras"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"

source scripts/services/registry.sh
REG=$CAIRN_TEST_REGISTRY
TOOL="$CAIRN_TMP/benchtool"
go build -o "$TOOL" ./bench/models/benchtool

MODEL="$CAIRN_TMP/model"
"$TOOL" gen "$MODEL" 4 "$MIB"
echo "model: $(du -sh "$MODEL" | cut -f1) in $(ls "$MODEL" | wc -l) files"

oras_files=()
for f in "$MODEL"/*.safetensors; do oras_files+=("$(basename "$f"):application/vnd.cncf.model.weight.v1.raw"); done
oras_files+=("config.json:application/vnd.cncf.model.weight.config.v1.raw")

# Times in seconds by tool and operation (all rounds, and round 1 alone:
# a cold digest cache); cairn's peak RSS over every run.
declare -A t_all=() t_cold=() reg_all=() reg_cold=()
for k in cairn-push cairn-pull oras-push oras-pull; do t_all[$k]=0; t_cold[$k]=0; reg_all[$k]=0; reg_cold[$k]=0; done
# The registry's CPU time so far, "USER SYS" in seconds, from /proc (its
# pid is the one scripts/services/registry.sh started).
ticks=$(getconf CLK_TCK)
registry_cpu() { awk -v hz="$ticks" '{sub(/^.*\) /, ""); printf "%.2f %.2f", $12 / hz, $13 / hz}' "/proc/$_registry_pid/stat"; }
cairn_rss=0; cairn_anon=0
add() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a + b}'; }
measure() { # measure TOOL CMD…: adds the time to TOOL-$label, updates cairn's peak RSS
  local var=$1; shift
  local out t rss anon ru0 rs0 ru1 rs1 reg
  sync # no writeback of the previous step's files during this one
  read -r ru0 rs0 <<<"$(registry_cpu)"
  out=$("$TOOL" run -stdout "$CAIRN_TMP/stdout" "$@" 2>"$CAIRN_TMP/stderr") || { cat "$CAIRN_TMP/stderr" >&2; return 1; }
  read -r ru1 rs1 <<<"$(registry_cpu)"
  read -r t rss anon <<<"$out"
  printf '  %-5s %-4s %7.2fs  max RSS %3d MiB (own memory %3d MiB)  %s\n' "$var" "$label" "$t" $((rss / 1024)) $((anon / 1024)) "$(tail -n 1 "$CAIRN_TMP/stderr")"
  reg=$(awk -v a="$ru0" -v b="$rs0" -v c="$ru1" -v d="$rs1" 'BEGIN {printf "%.2f %.2f %.2f", c - a + d - b, c - a, d - b}')
  printf '  %-5s %-4s  registry CPU %5.2fs (user %.2fs sys %.2fs)\n' "$var" "$label" $reg
  t_all[$var-$label]=$(add "${t_all[$var-$label]}" "$t")
  reg_all[$var-$label]=$(add "${reg_all[$var-$label]}" "${reg%% *}")
  if [ "$round" = 1 ]; then
    t_cold[$var-$label]=$(add "${t_cold[$var-$label]}" "$t")
    reg_cold[$var-$label]=$(add "${reg_cold[$var-$label]}" "${reg%% *}")
  fi
  if [ "$var" = cairn ]; then
    if [ "$rss" -gt "$cairn_rss" ]; then cairn_rss=$rss; fi
    if [ "$anon" -gt "$cairn_anon" ]; then cairn_anon=$anon; fi
  fi
}
run_cairn() {
  local out="$CAIRN_TMP/pull-cairn"
  label=push measure cairn "$CAIRN" model push --plain-http --digest-cache "$CAIRN_TMP/digests" "$REG/bench/cairn-$1:v" "$MODEL"
  local ref
  ref=$(tail -n 1 "$CAIRN_TMP/stdout")
  label=pull measure cairn "$CAIRN" model pull --plain-http "$ref" -o "$out"
  rm -rf "$out"
}
run_oras() {
  local out="$CAIRN_TMP/pull-oras"
  label=push measure oras bash -c "cd '$MODEL' && exec '$ORAS' push --plain-http '$REG/bench/oras-$1:v' --artifact-type application/vnd.cncf.model.manifest.v1+json ${oras_files[*]}"
  label=pull measure oras "$ORAS" pull --plain-http "$REG/bench/oras-$1:v" -o "$out"
  rm -rf "$out"
}

for ((round = 1; round <= ROUNDS; round++)); do
  echo "round $round"
  if ((round % 2)); then run_cairn "$round"; run_oras "$round"; else run_oras "$round"; run_cairn "$round"; fi
done

ratio() { awk -v c="$1" -v o="$2" 'BEGIN {printf "%.2f", c / o}'; }
verdict() { awk -v r="$1" -v g="$2" 'BEGIN {print (r <= g) ? "met" : "NOT met"}'; }
echo
echo "models: $MIB MiB x $ROUNDS rounds, each to a new repository (rounds 2+ mount unchanged blobs through cairn's digest cache)"
printf 'models: %-22s %10s %10s %12s\n' "" "cairn" "oras" "cairn/oras"
for op in push pull; do
  printf 'models: %-22s %9ss %9ss %12s\n' "$op, all rounds" "${t_all[cairn-$op]}" "${t_all[oras-$op]}" "$(ratio "${t_all[cairn-$op]}" "${t_all[oras-$op]}")"
  printf 'models: %-22s %9ss %9ss %12s\n' "$op, round 1 (cold)" "${t_cold[cairn-$op]}" "${t_cold[oras-$op]}" "$(ratio "${t_cold[cairn-$op]}" "${t_cold[oras-$op]}")"
done
for op in push pull; do
  printf 'models: %-22s %9ss %9ss\n' "registry CPU $op all" "${reg_all[cairn-$op]}" "${reg_all[oras-$op]}"
  printf 'models: %-22s %9ss %9ss\n' "registry CPU $op cold" "${reg_cold[cairn-$op]}" "${reg_cold[oras-$op]}"
done
push_ratio=$(ratio "${t_all[cairn-push]}" "${t_all[oras-push]}")
pull_ratio=$(ratio "${t_all[cairn-pull]}" "${t_all[oras-pull]}")
rss_mib=$(awk -v k="$cairn_rss" 'BEGIN {printf "%.1f", k / 1024}')
echo "models: push ratio $push_ratio (goal <= 0.8: $(verdict "$push_ratio" 0.8))"
echo "models: pull ratio $pull_ratio (goal <= 0.8: $(verdict "$pull_ratio" 0.8))"
echo "models: cairn peak RSS $rss_mib MiB, of which its own memory (RssAnon) $((cairn_anon / 1024)) MiB (goal <= 64: $(verdict "$rss_mib" 64))"
echo "models: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
