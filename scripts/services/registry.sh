# Sourced by scripts/test.sh (and bench/models/run.sh): Debian's
# docker-registry (OCI distribution 2.8) on 127.0.0.1, no auth, filesystem
# storage under $CAIRN_TMP; exports CAIRN_TEST_REGISTRY=127.0.0.1:PORT.
[ -x /usr/bin/docker-registry ] || apt_install docker-registry
# Peer clients the interoperability tests read cairn's artifacts with
# (built once into $GOBIN, skipped when present).
go_tool crane github.com/google/go-containerregistry/cmd/crane@v0.22.0
go_tool oras oras.land/oras/cmd/oras@v1.3.6
_registry_dir="$CAIRN_TMP/registry"
mkdir -p "$_registry_dir/data"
_registry_port=$(free_port)
cat >"$_registry_dir/config.yml" <<EOF_REGISTRY
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $_registry_dir/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$_registry_port
EOF_REGISTRY
/usr/bin/docker-registry serve "$_registry_dir/config.yml" >"$_registry_dir/log" 2>&1 &
_registry_pid=$!
on_exit "kill $_registry_pid"
wait_port "$_registry_port" 30 || { cat "$_registry_dir/log" >&2; return 1; }
export CAIRN_TEST_REGISTRY="127.0.0.1:$_registry_port"
echo "docker-registry $(/usr/bin/docker-registry --version 2>/dev/null | awk '{print $NF}') on $CAIRN_TEST_REGISTRY"
