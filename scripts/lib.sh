# Shared shell helpers for scripts/test.sh, scripts/demo.sh and bench/run.sh.
# Sourced, not run.

export GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
export PATH="$GOBIN:$PATH"
CAIRN_TMP="${CAIRN_TMP:-$(mktemp -d /tmp/cairn.XXXXXX)}"
export CAIRN_TMP

_cleanups=()
# on_exit CMD: run CMD when the script exits (last registered runs first).
on_exit() { _cleanups=("$1" "${_cleanups[@]}"); }
_run_cleanups() {
  for c in "${_cleanups[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
  [ -n "${CAIRN_KEEP_TMP:-}" ] || rm -rf "$CAIRN_TMP"
}
trap _run_cleanups EXIT

step() { printf '\n== %s\n' "$*"; }

# free_port: print a TCP port on 127.0.0.1 nothing listens on.
free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 12000 ))  # below the kernel's ephemeral range (32768-60999)
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# wait_port PORT [SECONDS]: wait until 127.0.0.1:PORT accepts connections.
wait_port() {
  local i
  for ((i = 0; i < ${2:-30} * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1 after ${2:-30}s" >&2
  return 1
}

# apt_install PKG...: install Debian packages that are missing.
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install ${missing[*]}" >&2; return 1; fi
  if [ -z "${_apt_updated:-}" ]; then apt-get update -qq; _apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# go_tool NAME MODULE@VERSION: go install a tool into $GOBIN unless present.
go_tool() {
  command -v "$1" >/dev/null 2>&1 && [ -x "$GOBIN/$1" ] && return 0
  echo "building $1 ($2)"
  go install "$2"
}

# start_services: source every scripts/services/*.sh; each installs its
# server if missing, starts it on loopback, exports CAIRN_TEST_* and
# registers its cleanup with on_exit.
start_services() {
  local s
  for s in scripts/services/*.sh; do
    [ -e "$s" ] || continue
    step "service $(basename "$s" .sh)"
    source "$s"
  done
}
