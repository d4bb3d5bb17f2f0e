#!/bin/sh
# Install cairn-agent as a systemd service on a device.
#
#   sudo sh install.sh --server https://cairn.example:7480 --enroll-token TOKEN \
#       [--binary bin/cairn-agent-linux-arm64] [--args "--labels site=lab"]
#
# Copies the binary to /usr/local/bin/cairn-agent, writes /etc/cairn-agent/env
# (mode 0600: it holds the enrollment token until the first start enrolls),
# installs cairn-agent.service and starts it. The binary defaults to
# bin/cairn-agent-linux-<arch> of `make agents` for this machine's arch.
# DESTDIR installs under another root and NO_START=1 leaves systemd alone
# (packaging, tests).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
server= token= binary= args=
while [ $# -gt 0 ]; do
	case $1 in
	--server) server=$2; shift 2 ;;
	--enroll-token) token=$2; shift 2 ;;
	--binary) binary=$2; shift 2 ;;
	--args) args=$2; shift 2 ;;
	-h|--help) sed -n '2,14p' "$0"; exit 0 ;;
	*) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$server" ] || { echo "install.sh: --server URL is required" >&2; exit 2; }
[ -n "$token" ] || { echo "install.sh: --enroll-token TOKEN is required" >&2; exit 2; }
if [ -z "$binary" ]; then
	case $(uname -m) in
	x86_64) arch=amd64 ;;
	aarch64|arm64) arch=arm64 ;;
	armv7l|armv7*) arch=armv7 ;;
	*) echo "install.sh: no cairn-agent build for $(uname -m); pass --binary" >&2; exit 2 ;;
	esac
	binary=$here/../../bin/cairn-agent-linux-$arch
fi
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable (run make agents)" >&2; exit 2; }
case $server$token$args in
*"
"*) echo "install.sh: values must be one line" >&2; exit 2 ;;
esac

d=${DESTDIR:-}
install -d -m 0755 "$d/usr/local/bin" "$d/etc/systemd/system"
install -d -m 0700 "$d/etc/cairn-agent" "$d/var/lib/cairn-agent"
install -m 0755 "$binary" "$d/usr/local/bin/cairn-agent"
install -m 0644 "$here/cairn-agent.service" "$d/etc/systemd/system/cairn-agent.service"
umask 077
{
	echo "CAIRN_SERVER=$server"
	echo "CAIRN_ENROLL_TOKEN=$token"
	echo "CAIRN_AGENT_ARGS=$args"
} >"$d/etc/cairn-agent/env"
chmod 0600 "$d/etc/cairn-agent/env"

if [ "${NO_START:-}" != 1 ]; then
	systemctl daemon-reload
	systemctl enable --now cairn-agent.service
	echo "cairn-agent started: journalctl -u cairn-agent -f"
else
	echo "cairn-agent installed under ${d:-/} (not started)"
fi
