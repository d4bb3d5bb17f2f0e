# A real etcd and kube-apiserver on loopback for the cluster-target (kube
# driver) tests. Sourced by scripts/test.sh after scripts/lib.sh.
# Exports CAIRN_TEST_KUBECONFIG: an admin kubeconfig (client-certificate auth).
#
# Neither is packaged for Debian at this version, and `go install` refuses
# k8s.io/kubernetes (its go.mod replaces the staging modules with ./staging),
# so both are built once from the module proxy in a throwaway wrapper module
# that requires k8s.io/kubernetes and replaces every k8s.io/<staging> module
# by its published v0.x, then cached in $GOBIN by version
# (kube-apiserver-v1.37.2, etcd-v3.7.0). etcd comes from the same module graph
# (go.etcd.io/etcd/server/v3 at the version kubernetes itself requires).
# No kubelet, scheduler or controller-manager runs: tests set workload status
# through the /status subresource, as controllers would.
KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.0

_kube_apiserver_bin="$GOBIN/kube-apiserver-$KUBE_VERSION"
_kube_etcd_bin="$GOBIN/etcd-$ETCD_VERSION"

# _kube_build: build both binaries into $GOBIN unless already there.
_kube_build() {
  [ -x "$_kube_apiserver_bin" ] && [ -x "$_kube_etcd_bin" ] && return 0
  local w start staging
  start=$(date +%s)
  w=$(mktemp -d /tmp/cairn-kube-build.XXXXXX)
  echo "building kube-apiserver $KUBE_VERSION and etcd $ETCD_VERSION in $w (once; a few minutes cold)"
  (
    set -e
    cd "$w"
    go mod init cairn.local/kubebuild >/dev/null 2>&1
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
    [ -n "$staging" ] || { echo "no staging replaces found in $gomod" >&2; exit 1; }
    local m args=()
    for m in $staging; do args+=("-replace=$m=$m@v0.${KUBE_VERSION#v1.}"); done
    go mod edit "${args[@]}" \
      -require="k8s.io/kubernetes@$KUBE_VERSION" \
      -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
EOF
    go mod tidy >/dev/null 2>&1 || go mod tidy
    go build -trimpath -o "$w/etcd" go.etcd.io/etcd/server/v3
    go build -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2) \
      -X k8s.io/component-base/version.gitTreeState=clean \
      -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z" \
      -o "$w/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
    mkdir -p "$GOBIN"
    mv "$w/etcd" "$_kube_etcd_bin"
    mv "$w/kube-apiserver" "$_kube_apiserver_bin"
  ) || { echo "building kube-apiserver/etcd failed (work dir $w kept)" >&2; return 1; }
  rm -rf "$w"
  echo "built kube-apiserver and etcd in $(( $(date +%s) - start ))s"
}

if [ -n "${CAIRN_KUBE_BUILD_ONLY:-}" ]; then
  _kube_build
  return $? 2>/dev/null || exit $?
fi

_kube_t0=$(date +%s%N)
_kube_build || return 1
_kube_dir="$CAIRN_TMP/kube"
mkdir -p "$_kube_dir/etcd"
# _kube_certs: a CA, the API servers' serving certificate (127.0.0.1), an
# admin client certificate (group system:masters) and the service-account
# signing key.
_kube_certs() (
  set -e
  cd "$_kube_dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cairn-test-ca" \
    -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=cairn-admin" -keyout admin.key -out admin.csr 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >admin.ext
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile admin.ext -out admin.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)
_kube_certs || { echo "kube: generating certificates failed" >&2; return 1; }

_kube_etcd_port=$(free_port)
_kube_etcd_peer=$(free_port)
while [ "$_kube_etcd_peer" = "$_kube_etcd_port" ]; do _kube_etcd_peer=$(free_port); done
"$_kube_etcd_bin" --data-dir "$_kube_dir/etcd" --name cairn-test \
  --listen-client-urls "http://127.0.0.1:$_kube_etcd_port" --advertise-client-urls "http://127.0.0.1:$_kube_etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$_kube_etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$_kube_etcd_peer" \
  --initial-cluster "cairn-test=http://127.0.0.1:$_kube_etcd_peer" \
  --unsafe-no-fsync --quota-backend-bytes 1073741824 --log-level error \
  >"$_kube_dir/etcd.log" 2>&1 &
_kube_etcd_pid=$!
on_exit "kill $_kube_etcd_pid; wait $_kube_etcd_pid"
wait_port "$_kube_etcd_port" 30 || { cat "$_kube_dir/etcd.log"; return 1; }

# _kube_apiserver NAME PREFIX PORT: start a kube-apiserver on etcd under
# PREFIX and write NAME.kubeconfig.
_kube_apiserver() {
  local name=$1 prefix=$2 port=$3
  "$_kube_apiserver_bin" \
    --etcd-servers "http://127.0.0.1:$_kube_etcd_port" --etcd-prefix "$prefix" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --tls-cert-file "$_kube_dir/server.crt" --tls-private-key-file "$_kube_dir/server.key" \
    --client-ca-file "$_kube_dir/ca.crt" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$_kube_dir/sa.pub" --service-account-signing-key-file "$_kube_dir/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none \
    --enable-priority-and-fairness=false --disable-admission-plugins ServiceAccount \
    --cert-dir "$_kube_dir/$name-certs" >"$_kube_dir/$name.log" 2>&1 &
  local pid=$!
  on_exit "kill $pid; wait $pid"
  cat >"$_kube_dir/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster: {server: "https://127.0.0.1:$port", certificate-authority: "$_kube_dir/ca.crt"}
users:
- name: cairn-admin
  user: {client-certificate: "$_kube_dir/admin.crt", client-key: "$_kube_dir/admin.key"}
contexts:
- name: $name
  context: {cluster: $name, user: cairn-admin}
current-context: $name
EOF
}
_kube_plain_port=$(free_port)
_kube_kserve_port=$(free_port)
while [ "$_kube_kserve_port" = "$_kube_plain_port" ]; do _kube_kserve_port=$(free_port); done
_kube_apiserver plain /registry-plain "$_kube_plain_port"
_kube_apiserver kserve /registry-kserve "$_kube_kserve_port"
# _kube_ready PORT: /readyz answers ok.
_kube_ready() {
  [ "$(curl -sf --max-time 2 --cacert "$_kube_dir/ca.crt" --cert "$_kube_dir/admin.crt" --key "$_kube_dir/admin.key" \
    "https://127.0.0.1:$1/readyz" 2>/dev/null)" = ok ]
}
for _kube_port in "$_kube_plain_port" "$_kube_kserve_port"; do
  _kube_ok=
  for _i in $(seq 1 1200); do
    if _kube_ready "$_kube_port"; then _kube_ok=1; break; fi
    sleep 0.1
  done
  if [ -z "$_kube_ok" ]; then
    echo "kube-apiserver on 127.0.0.1:$_kube_port did not become ready:"
    tail -n 30 "$_kube_dir/plain.log" "$_kube_dir/kserve.log"
    return 1
  fi
done
export CAIRN_TEST_KUBECONFIG="$_kube_dir/plain.kubeconfig"
export CAIRN_TEST_KUBECONFIG_KSERVE="$_kube_dir/kserve.kubeconfig"
_kube_ms=$(( ($(date +%s%N) - _kube_t0) / 1000000 ))
echo "kube-apiserver $KUBE_VERSION on 127.0.0.1:$_kube_plain_port and 127.0.0.1:$_kube_kserve_port, etcd $ETCD_VERSION on 127.0.0.1:$_kube_etcd_port; up in ${_kube_ms}ms"
