# MinIO on loopback for the blob-store and dataset tests. Sourced by
# scripts/test.sh (and bench/datasets/run.sh) after scripts/lib.sh.
# Exports CAIRN_TEST_MINIO (host:port), CAIRN_TEST_MINIO_USER and
# CAIRN_TEST_MINIO_PASSWORD.
# Tagged RELEASE.* versions are not served by the module proxy here, so the
# pseudo-version is pinned; the binary is built once into $GOBIN.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
go_tool minio "github.com/minio/minio@$MINIO_VERSION"

_minio_port=$(free_port)
_minio_console=$(free_port)
while [ "$_minio_console" = "$_minio_port" ]; do _minio_console=$(free_port); done
mkdir -p "$CAIRN_TMP/minio"
export CAIRN_TEST_MINIO="127.0.0.1:$_minio_port"
export CAIRN_TEST_MINIO_USER=cairntest
export CAIRN_TEST_MINIO_PASSWORD=cairntest-secret
MINIO_ROOT_USER=$CAIRN_TEST_MINIO_USER MINIO_ROOT_PASSWORD=$CAIRN_TEST_MINIO_PASSWORD \
  MINIO_BROWSER=off MINIO_UPDATE=off \
  minio server "$CAIRN_TMP/minio/data" --quiet \
  --address "127.0.0.1:$_minio_port" --console-address "127.0.0.1:$_minio_console" \
  >"$CAIRN_TMP/minio/log" 2>&1 &
_minio_pid=$!
on_exit "kill $_minio_pid; wait $_minio_pid"
# _minio_live: GET /minio/health/live answers 200 (bash only; no curl needed).
_minio_live() {
  (exec 3<>"/dev/tcp/127.0.0.1/$_minio_port" &&
    printf 'GET /minio/health/live HTTP/1.0\r\nHost: %s\r\n\r\n' "$CAIRN_TEST_MINIO" >&3 &&
    head -n1 <&3 | grep -q ' 200') 2>/dev/null
}
_minio_ready=
for _i in $(seq 1 300); do
  if _minio_live; then _minio_ready=1; break; fi
  kill -0 "$_minio_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$_minio_ready" ]; then
  echo "minio did not become ready on $CAIRN_TEST_MINIO:"; cat "$CAIRN_TMP/minio/log"
  return 1
fi
echo "minio on $CAIRN_TEST_MINIO"
