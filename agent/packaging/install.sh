#!/bin/sh
# Install an unpacked lastgasp release on a systemd gateway (Debian 12 and the like), as root:
#
#   tar -xzf lastgasp-VERSION-linux-ARCH.tar.gz && sh lastgasp/agent/packaging/install.sh
#
# It copies the release to /opt/lastgasp, creates the user and group lastgasp (sysusers.d) and the
# directories /etc/lastgasp, /etc/lastgasp/keys, /var/lib/lastgasp and /run/lastgasp (tmpfiles.d), puts the
# example config at /etc/lastgasp/agent.yaml unless one is there, and installs the unit (not enabled: edit
# the config and make the keys first; README "Build and install").
#
# ROOT=DIR installs into the directory tree DIR instead of / (an image being assembled, and the tests).
set -eu

ROOT=${ROOT:-}
release=$(cd "$(dirname "$0")/../.." && pwd)
packaging=$release/agent/packaging

if [ ! -f "$release/dist/lastgasp.mjs" ] || [ ! -d "$release/node_modules" ]; then
  echo "install.sh: $release is not a release (no dist/lastgasp.mjs or node_modules): unpack a tarball from 'npm run package'" >&2
  exit 1
fi

if [ "$release" = "$(cd "$ROOT/opt/lastgasp" 2>/dev/null && pwd)" ]; then
  echo "install.sh: run it from an unpacked tarball, not from the installed $ROOT/opt/lastgasp" >&2
  exit 1
fi

# The program. A new release replaces the old one whole; the config and the data are elsewhere.
rm -rf "$ROOT/opt/lastgasp.new"
mkdir -p "$ROOT/opt"
cp -a "$release" "$ROOT/opt/lastgasp.new"
rm -rf "$ROOT/opt/lastgasp"
mv "$ROOT/opt/lastgasp.new" "$ROOT/opt/lastgasp"

# The user, the group and the directories: the same files systemd reads at every boot.
install -D -m 0644 "$packaging/lastgasp.sysusers.conf" "$ROOT/usr/lib/sysusers.d/lastgasp.conf"
install -D -m 0644 "$packaging/lastgasp.tmpfiles.conf" "$ROOT/usr/lib/tmpfiles.d/lastgasp.conf"
mkdir -p "$ROOT/etc"
systemd-sysusers --root="${ROOT:-/}" "$ROOT/usr/lib/sysusers.d/lastgasp.conf"
systemd-tmpfiles --create --root="${ROOT:-/}" "$ROOT/usr/lib/tmpfiles.d/lastgasp.conf"

# The example config, readable by the agent's group; an existing config is never overwritten.
if [ ! -e "$ROOT/etc/lastgasp/agent.yaml" ]; then
  gid=$(awk -F: '$1 == "lastgasp" { print $3 }' "$ROOT/etc/group")
  install -m 0640 -o 0 -g "$gid" "$packaging/agent.example.yaml" "$ROOT/etc/lastgasp/agent.yaml"
fi

install -D -m 0644 "$packaging/lastgasp.service" "$ROOT/etc/systemd/system/lastgasp.service"
if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
echo "lastgasp installed in ${ROOT:-}/opt/lastgasp; next: edit ${ROOT:-}/etc/lastgasp/agent.yaml, make the keys, systemctl enable --now lastgasp"
