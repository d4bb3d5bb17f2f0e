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
