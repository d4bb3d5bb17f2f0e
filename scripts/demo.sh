#!/usr/bin/env bash
# make demo: cairn's main job end to end on embedded defaults, on one machine.
#
#  1. builds the example binaries (make demo already built bin/cairn)
#  2. makes a throwaway CA and a server certificate in the temporary folder
#     and starts `cairn serve` there over HTTPS (SQLite, blob folder,
#     built-in OCI registry on the same port); agents and the CLI trust the
#     CA (--ca-file, CAIRN_CA_FILE)
#  3. generates the bearing dataset, trains model v1 with gorgonia tensor,
#     pushes the dataset (`cairn data push`) and the model (`cairn model push`)
#  4. commits the example GitOps repo, with the real digests, to a local Git
#     repository the server watches
#  5. starts 6 agents (Jetson Orin boards and x86 gateways, staging and prod)
#     and the demo runtime serving device-1's active model slot
#  6. waits for v1 to roll out wave by wave, staging then prod
#  7. commits v2 (trained on 4x the data, but exported broken) and shows the
#     failed health check and the automatic rollback
#  8. prints `cairn get targets`, `cairn plan` and the lineage answer to
#     "what ran on device-3 and what data trained it"
#
# Exits non-zero when a step fails; stops every process it started; prints
# where the logs are. CAIRN_KEEP_TMP=1 keeps the whole temporary folder;
# CAIRN_DEMO_LOGS=DIR puts the logs there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
# Ctrl-C, a timeout or a hang-up still runs the cleanups (the EXIT trap).
trap 'exit 130' INT
trap 'exit 143' TERM HUP

ROOT=$PWD
CAIRN=${CAIRN_BIN:-$ROOT/bin/cairn}
T=$CAIRN_TMP
BIN=$T/bin
DATA=$T/server     # cairn serve's data folder
REPO=$T/gitops     # the GitOps repository the server watches
WORK=$T/work       # datasets and models
LOGS=${CAIRN_DEMO_LOGS:-$(mktemp -d /tmp/cairn-demo-logs.XXXXXX)}
mkdir -p "$BIN" "$DATA" "$REPO" "$WORK" "$LOGS"
DEMO_START=$(date +%s)
exec 9>&2 # cleanups run with stderr discarded; they report through fd 9
DEMO_OK=
finish() {
  if [ -z "$DEMO_OK" ]; then
    echo "demo FAILED after $(( $(date +%s) - DEMO_START ))s; logs: $LOGS" >&9
    for f in "$LOGS"/*.log; do
      [ -s "$f" ] || continue
      echo "--- last lines of $f" >&9; tail -n 15 "$f" >&9
    done
  fi
}
on_exit finish

# stop PID: TERM the process group started by `start`, then KILL after 5s.
stop() {
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# start NAME CMD...: run CMD in its own process group, output in
# $LOGS/NAME.log, stopped on exit. Sets START_PID.
start() {
  local name=$1; shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 &
  START_PID=$!
  on_exit "stop $START_PID"
}

# wait_for SECONDS DESCRIPTION CMD...: retry CMD every 0.5s until it succeeds.
wait_for() {
  local secs=$1 what=$2 i; shift 2
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "timed out after ${secs}s waiting for $what" >&2
  return 1
}

# last_line CMD...: run CMD (stderr to the terminal), print its last stdout line.
last_line() { "$@" | tail -n 1; }

elapsed() { echo "$(( $(date +%s) - DEMO_START ))s"; }

[ -x "$CAIRN" ] || { echo "bin/cairn is missing: run make demo (or make build first)" >&2; exit 1; }

step "1/9 build the example binaries into $BIN"
go build -o "$BIN/" ./examples/bearing ./examples/runtime ./examples/demowatch ./cmd/cairn-agent
go build -o "$BIN/testca" ./internal/testca/cmd
echo "bearing (dataset generator, trainer, selftest), runtime (model server), demowatch (rollout follower), cairn-agent (the device agent), testca (a throwaway CA)"

step "2/9 start cairn serve over HTTPS on embedded defaults"
# A CA of the demo's own and a certificate for 127.0.0.1, ::1 and
# localhost signed by it (valid for a day): every API, the dashboard and
# the built-in registry are served over TLS.
PKI=$T/pki
CA=$("$BIN/testca" "$PKI")
PORT=$(free_port)
SERVER=https://127.0.0.1:$PORT
REGISTRY=127.0.0.1:$PORT
git init -q -b main "$REPO"
git -C "$REPO" config user.email demo@cairn.dev
git -C "$REPO" config user.name "cairn demo"
# Short intervals for a demo: fetch Git every 2s, reconcile every second.
printf 'reconcileInterval: 1s\n' >"$T/serve.yaml"
start serve "$CAIRN" serve --config "$T/serve.yaml" --data "$DATA" --listen "127.0.0.1:$PORT" \
  --repo "$REPO" --interval 2s --tls-cert "$PKI/cert.pem" --tls-key "$PKI/key.pem"
SERVE_PID=$START_PID
wait_port "$PORT" 30
wait_for 30 "the admin token in $DATA/admin-token" test -s "$DATA/admin-token"
# Every cairn command below trusts the demo's CA through CAIRN_CA_FILE.
export CAIRN_SERVER=$SERVER CAIRN_TOKEN CAIRN_CA_FILE=$CA
CAIRN_TOKEN=$(cat "$DATA/admin-token")
STORE=file://$DATA/datasets # the "default" dataset store of the manifests
echo "cairn serve: $SERVER (fleet API, status API, OCI registry at /v2/), data in $DATA"
echo "dashboard:   $SERVER/  (log in with the admin token: $CAIRN_TOKEN)"
trust_ca() {
  echo "TLS: the server's certificate is signed by the demo's CA $CA; trust it with"
  echo "  curl --cacert $CA $SERVER/healthz"
  echo "  CAIRN_CA_FILE=$CA cairn get targets --server $SERVER --token \$(cat $DATA/admin-token)   # or --ca-file"
  echo "  cairn-agent --server $SERVER --ca-file $CA --enroll-token-file $DATA/enroll-token ..."
  echo "  (a browser warns about the certificate unless the CA is imported into its trust store)"
}
trust_ca
curl -fsS --cacert "$CA" "$SERVER/healthz" >/dev/null

step "3/9 generate the dataset, train model v1, push both"
# Seeded data, deterministic training and a fixed creation time: the same
# dataset digests on every run, and the same model digest for one commit.
export SOURCE_DATE_EPOCH=1764028800
# Record each push in the server's lineage (packagedFrom the commit of the
# training code, trainedOn the dataset).
PUSH_LINEAGE=(--lineage "$SERVER")
if REV=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null); then
  PUSH_LINEAGE+=(--source https://github.com/cairn-dev/cairn --revision "$REV")
fi
"$BIN/bearing" gen --out "$WORK/data-v1" --rows 2000 --seed 1
"$BIN/bearing" train --data "$WORK/data-v1/train" --holdout "$WORK/data-v1/holdout" \
  --out "$WORK/model-v1" --version 1.0.0
TRAIN_V1=$(last_line "$CAIRN" data push "$WORK/data-v1/train" --store "$STORE" --profile)
HOLDOUT=$(last_line "$CAIRN" data push "$WORK/data-v1/holdout" --store "$STORE")
echo "dataset bearing-vibration v1: $TRAIN_V1"
echo "dataset bearing-holdout:      $HOLDOUT"
MODEL_V1=$(last_line "$CAIRN" model push "$REGISTRY/models/bearing-anomaly:1.0.0" "$WORK/model-v1" \
  --name bearing-anomaly --version 1.0.0 --format raw \
  --trained-on "bearing-vibration=$TRAIN_V1" "${PUSH_LINEAGE[@]}")
echo "model bearing-anomaly 1.0.0: $MODEL_V1"

# metric NAME FILE: a number from metrics.json (no jq on a fresh machine).
metric() { sed -n "s/^ *\"$1\": \([0-9.]*\).*/\1/p" "$2" | head -n 1 | cut -c1-6; }

# render VERSION MODEL_REF TRAIN_DIGEST METRICS_FILE: write the model and
# dataset manifests of one version into the repo.
render() {
  local version=$1 ref=$2 train=$3 metrics=$4
  cat >"$REPO/manifests/datasets.yaml" <<EOF
# Written by scripts/demo.sh from what \`cairn data push\` printed.
apiVersion: cairn.dev/v1alpha1
kind: Dataset
metadata:
  name: bearing-vibration
  labels: {domain: predictive-maintenance}
spec:
  digest: $train
  store: default
  format: csv
  license: CC-BY-4.0
---
apiVersion: cairn.dev/v1alpha1
kind: Dataset
metadata:
  name: bearing-holdout
  labels: {domain: predictive-maintenance}
spec:
  digest: $HOLDOUT
  store: default
  format: csv
  license: CC-BY-4.0
EOF
  cat >"$REPO/manifests/models.yaml" <<EOF
# Written by scripts/demo.sh from what \`cairn model push\` and \`bearing train\` printed.
apiVersion: cairn.dev/v1alpha1
kind: Model
metadata:
  name: bearing-anomaly
  labels: {team: reliability}
spec:
  version: $version
  artifact: $ref
  format: raw
  trainedOn: [bearing-vibration]
  evaluatedOn:
    - dataset: bearing-holdout
      metrics: {auc: $(metric auc "$metrics"), f1: $(metric f1 "$metrics")}
  requires:
    memory: 64Mi
    arch: [amd64, arm64]
EOF
  # With EVALUATE=1: every release of the model is scored against its live
  # champion on the holdout, by evaluator agents, daily and per candidate.
  if [ "${EVALUATE:-}" = 1 ]; then
    cat >>"$REPO/manifests/models.yaml" <<EOF
  evaluation:
    schedule: "0 3 * * *"
    dataset: bearing-holdout
    command: [$BIN/bearing, evaluate]
    timeout: 2m
    metrics:
      auc: {min: 0.9, maxDrop: 0.02}
      f1: {min: 0.8}
EOF
  fi
}

step "4/9 commit the example GitOps repo with the real digests"
cp -r examples/gitops/manifests examples/gitops/policies "$REPO/"
# The agents' health check runs the demo's bearing binary on the new slot.
# Six agents share this machine, so each keeps its active slot under its own
# --root (ROOT/models/RELEASE/current) instead of a shared runtime.path.
# device-1's runtime listens on RPORT (the manifests say 8080).
RPORT=$(free_port)
sed -i -e "s#/usr/local/bin/bearing#$BIN/bearing#" -e '/^    path: /d' -e "s#127.0.0.1:8080#127.0.0.1:$RPORT#" "$REPO/manifests/releases.yaml"
# The alert goes to a port nothing listens on: delivery failures are logged.
render 1.0.0 "$MODEL_V1" "$TRAIN_V1" "$WORK/model-v1/metrics.json"
"$CAIRN" validate "$REPO"
git -C "$REPO" add -A
git -C "$REPO" commit -qm "bearing-anomaly 1.0.0 on staging and prod"
COMMIT_V1=$(git -C "$REPO" rev-parse HEAD)
echo "commit $COMMIT_V1"

step "5/9 start 6 agents and the demo runtime"
# device-N: kind and environment
declare -A LABELS=(
  [1]="hardware=x86-gateway,env=staging,site=lab"
  [2]="hardware=jetson-orin,env=staging,site=lab"
  [3]="hardware=jetson-orin,env=prod,site=plant-a"
  [4]="hardware=jetson-orin,env=prod,site=plant-b"
  [5]="hardware=x86-gateway,env=prod,site=plant-a"
  [6]="hardware=x86-gateway,env=prod,site=plant-b"
)
# The Orin boards report the facts of a Jetson (this machine's arch aside).
mkdir -p "$T/devices"
printf '{"arch": "arm64", "osVersion": "5.1", "memory": 17179869184, "accelerators": ["nvidia-ampere"]}\n' >"$T/devices/orin-facts.json"
printf '{"memory": 4294967296}\n' >"$T/devices/gateway-facts.json"
for i in 1 2 3 4 5 6; do
  facts=$T/devices/gateway-facts.json
  [[ ${LABELS[$i]} == *jetson-orin* ]] && facts=$T/devices/orin-facts.json
  # --poll-wait 2s: each agent reports (and sends its input statistics)
  # at least every 2s.
  start "agent-device-$i" "$BIN/cairn-agent" --server "$SERVER" --enroll-token-file "$DATA/enroll-token" --ca-file "$CA" --poll-wait 2s \
    --name "device-$i" --labels "${LABELS[$i]}" --facts-file "$facts" --root "$T/devices/device-$i"
  printf '  device-%s  %s\n' "$i" "${LABELS[$i]}"
done
# A device enrolled with the fleet's token waits for an admin (cairn serve
# runs with enrollment: manual by default): accept the six.
for i in 1 2 3 4 5 6; do
  wait_for 30 "device-$i to enroll" "$CAIRN" target accept "device-$i"
done
"$CAIRN" target list
# device-1's active slot of the staging release, switched atomically by its agent.
SLOT=$T/devices/device-1/models/bearing-staging/current
# The runtime is the device's own model server on loopback: plain HTTP, not cairn serve.
start runtime "$BIN/runtime" --model-dir "$SLOT" --listen "127.0.0.1:$RPORT"
wait_port "$RPORT" 30
echo "runtime: http://127.0.0.1:$RPORT serving $SLOT"

step "6/9 roll out v1 in waves: staging in 2 waves, prod in 3 (5s bakes)"
watch() { "$BIN/demowatch" --server "$SERVER" --token-file "$DATA/admin-token" "$@"; }
watch --timeout 120s --want "bearing-staging=Succeeded@${MODEL_V1##*@}"
# bearing-prod has `after: {release: bearing-staging, healthyFor: 10s}` and
# prod-waves lists the promotion policy: admission holds prod until staging
# has run the same digest healthily for 10s, then admits it on its own.
if watch --denied bearing-prod; then
  echo "bearing-prod is held until bearing-staging has been healthy on v1 for 10s"
fi
watch --timeout 120s --want "bearing-staging=Succeeded@${MODEL_V1##*@}" --want "bearing-prod=Succeeded@${MODEL_V1##*@}"
echo "v1 is live on all 6 devices ($(elapsed))"
T_V1=$(date -u +%Y-%m-%dT%H:%M:%SZ)
wait_for 20 "the runtime to load v1" "$BIN/bearing" probe "http://127.0.0.1:$RPORT/healthz"
echo "device-1's runtime answers POST /predict:"
"$BIN/bearing" predict --url "http://127.0.0.1:$RPORT" --data "$WORK/data-v1/holdout" --rows 5
echo "and GET /metrics (JSON by default; Prometheus text here, per-feature drift statistics left out):"
"$BIN/bearing" probe "http://127.0.0.1:$RPORT/metrics?format=prometheus" | grep -v -e '^#' -e feature

step "7/9 commit v2: trained on 4x the data, but its export is broken"
"$BIN/bearing" gen --out "$WORK/data-v2" --rows 8000 --seed 2
"$BIN/bearing" train --data "$WORK/data-v2/train" --holdout "$WORK/data-v2/holdout" \
  --out "$WORK/model-v2" --version 2.0.0 --corrupt
TRAIN_V2=$(last_line "$CAIRN" data push "$WORK/data-v2/train" --store "$STORE" --profile)
MODEL_V2=$(last_line "$CAIRN" model push "$REGISTRY/models/bearing-anomaly:2.0.0" "$WORK/model-v2" \
  --name bearing-anomaly --version 2.0.0 --format raw \
  --trained-on "bearing-vibration=$TRAIN_V2" "${PUSH_LINEAGE[@]}")
echo "dataset bearing-vibration v2: $TRAIN_V2"
echo "model bearing-anomaly 2.0.0:  $MODEL_V2"
echo "\$ cairn data diff bearing-vibration v1 v2"
"$CAIRN" data diff "$TRAIN_V1" "$TRAIN_V2" --store "$STORE"
render 2.0.0 "$MODEL_V2" "$TRAIN_V2" "$WORK/model-v2/metrics.json"
git -C "$REPO" add -A
git -C "$REPO" commit -qm "bearing-anomaly 2.0.0: trained on 8000 rows"
COMMIT_V2=$(git -C "$REPO" rev-parse HEAD)
echo "commit $COMMIT_V2"
watch --timeout 120s --want "bearing-staging=RolledBack@${MODEL_V2##*@}" --all-on "${MODEL_V1##*@}"
echo "v2 failed its health check and was rolled back: every device runs v1 again ($(elapsed))"
echo
echo "\$ cairn describe target device-1    # why: the deployment log of the device"
"$CAIRN" describe target device-1
echo
wait_for 20 "the runtime to serve v1 again" "$BIN/bearing" probe "http://127.0.0.1:$RPORT/healthz"
echo "device-1's runtime saw the slot switch to v2, refused it, and serves v1 again:"
grep -E 'self-test|serving' "$LOGS/runtime.log" | tail -n 3 | sed "s#$T/##g"

step "8/9 the feedback loop: live inputs drift away from the training data"
# device-1's runtime counts its inputs into the bins of the training profile
# shipped with the model; the agent scrapes them (runtime.metrics) and the
# server compares a sliding window with the profile that
# `cairn data push --profile` stored. (device-2, the other staging device,
# shares this machine and so scrapes the same runtime.)
"$BIN/bearing" traffic --url "http://127.0.0.1:$RPORT" --data "$WORK/data-v1/holdout" --for 60s >/dev/null &
TRAFFIC_PID=$!
on_exit "kill $TRAFFIC_PID"
wait_for 30 "conclusive drift statistics" sh -c "\"$CAIRN\" get drift --target device-1 -o json | grep -q '\"conclusive\": true'"
echo "\$ cairn get drift    # inputs like the training data"
"$CAIRN" get drift --release bearing-staging
kill "$TRAFFIC_PID" 2>/dev/null || true
"$BIN/bearing" traffic --url "http://127.0.0.1:$RPORT" --data "$WORK/data-v1/holdout" --scale rms=3 --for 60s >/dev/null &
TRAFFIC_PID=$!
on_exit "kill $TRAFFIC_PID"
echo "now the vibration rms of the runtime's inputs triples ..."
wait_for 40 "DriftDetected" sh -c "\"$CAIRN\" get events --type DriftDetected | grep -q DriftDetected"
echo "\$ cairn get events --type DriftDetected"
"$CAIRN" get events --type DriftDetected
echo
echo "\$ cairn describe target device-1 | sed -n '/^Drift:/,\$p'"
"$CAIRN" describe target device-1 | sed -n '/^Drift:/,$p'
kill "$TRAFFIC_PID" 2>/dev/null || true

step "8b/9 the feedback loop: v2 scored against the live champion v1 on the holdout"
# An evaluator agent (label cairn.dev/role=evaluator) reads its runs from its
# desired state, pulls both models and the holdout (through the server, by
# digest), runs `bearing evaluate` on each and reports the JSON it prints.
# It is cairn agent: the device binary cairn-agent has no holdout pull.
start agent-evaluator-1 "$CAIRN" agent --server "$SERVER" --enroll-token-file "$DATA/enroll-token" --ca-file "$CA" --poll-wait 2s \
  --name evaluator-1 --labels cairn.dev/role=evaluator --root "$T/devices/evaluator-1"
wait_for 30 "evaluator-1 to enroll" "$CAIRN" target accept evaluator-1
EVALUATE=1 render 2.0.0 "$MODEL_V2" "$TRAIN_V2" "$WORK/model-v2/metrics.json"
git -C "$REPO" add -A
git -C "$REPO" commit -qm "bearing-anomaly: evaluate on bearing-holdout against the champion, daily at 03:00"
wait_for 90 "an evaluation verdict" sh -c "\"$CAIRN\" get events --type Evaluated | grep -q Evaluated"
echo "\$ cairn get events --type Evaluated"
"$CAIRN" get events --type Evaluated
echo
echo "\$ cairn get evaluations"
"$CAIRN" get evaluations

step "9/9 the fleet, the plan and the lineage"
echo "\$ cairn get targets"
"$CAIRN" get targets
echo
echo "\$ cairn get rollouts"
"$CAIRN" get rollouts
echo
echo "\$ cairn plan --base HEAD~1 --server \$CAIRN_SERVER    # the v2 commit as its reviewer saw it"
# Exit 2 is what a PR check sees: the promotion policy denies v2 for prod,
# since staging never ran it healthily.
rc=0
"$CAIRN" plan "$REPO" --base HEAD~1 --server "$SERVER" || rc=$?
[ "$rc" = 2 ] || { echo "cairn plan exited $rc, want 2 (bearing-prod denied by promotion)" >&2; exit 1; }
echo "(cairn plan exited 2: the check fails while a policy denies)"
echo
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
echo "\$ cairn lineage at device-3 --time $T_V1    # before v2 was committed"
AT_V1=$("$CAIRN" lineage at device-3 --time "$T_V1")
echo "$AT_V1"
echo
echo "\$ cairn lineage at device-3 --time $NOW    # after the rollback"
AT_NOW=$("$CAIRN" lineage at device-3 --time "$NOW")
echo "$AT_NOW"
# The answer must name model v1 and the dataset v1 that trained it.
for answer in "$AT_V1" "$AT_NOW"; do
  for want in "${MODEL_V1##*@sha256:}" "${TRAIN_V1#sha256:}"; do
    [[ $answer == *"${want:0:12}"* ]] || { echo "lineage at device-3 does not name ${want:0:12}" >&2; exit 1; }
  done
done
echo
echo "\$ cairn lineage upstream ${MODEL_V1##*@}    # what model v1 derives from"
"$CAIRN" lineage upstream "${MODEL_V1##*@}"
echo
echo "\$ cairn lineage where $TRAIN_V1    # which devices run a model trained on dataset v1"
"$CAIRN" lineage where "$TRAIN_V1"

echo
echo "\$ cairn get uptime --window 1h"
"$CAIRN" get uptime --window 1h
# The dashboard answers the same fleet: log in through its form (the token
# goes in the POST body, the session comes back as a cookie) and read the
# fleet page's counts.
JAR="$T/dashboard.cookies"
curl -fsS --cacert "$CA" -o /dev/null -c "$JAR" -H "Origin: $SERVER" --data-urlencode "token=$CAIRN_TOKEN" "$SERVER/login"
FLEET_PAGE=$(curl -fsS --cacert "$CA" -b "$JAR" "$SERVER/")
# 6 devices and the evaluator.
[[ $FLEET_PAGE == *'id="count-total">7<'* ]] || { echo "the dashboard's fleet page does not count 7 targets" >&2; exit 1; }
echo "dashboard fleet page: 7 targets ($(grep -o 'id="count-online">[0-9]*' <<<"$FLEET_PAGE" | grep -o '[0-9]*$') online)"

DEMO_OK=1
echo
echo "demo finished in $(elapsed); logs: $LOGS"
echo
echo "dashboard: $SERVER/"
echo "log in with the admin token: $CAIRN_TOKEN"
trust_ca
if [ "${CAIRN_DEMO_STAY:-}" = 1 ]; then
  echo "CAIRN_DEMO_STAY=1: the server and agents stay up; press Ctrl-C to stop them"
  trap 'echo; echo "stopping"; exit 0' INT TERM
  while kill -0 "$SERVE_PID" 2>/dev/null; do sleep 1; done
  echo "cairn serve exited" >&2
else
  echo "(CAIRN_DEMO_STAY=1 make demo keeps it up until Ctrl-C)"
fi
