#!/bin/sh
# Installs what Tidemark's tests, demo and test bed need on a fresh machine:
# Debian packages through apt (when root), then the locked npm packages.
# Idempotent and quick when everything is already there.
set -eu
cd "$(dirname "$0")/.."

# Extra packages for benchmarks come as arguments (e.g. ansible rsync).
# chromium (~350 MB, a one-time install) drives the browser tests through
# playwright-core, which never downloads a browser of its own. age makes the
# tests' encrypted files with the real tool.
packages="git redis-server openssh-server openssh-client systemd systemd-container debootstrap iproute2 util-linux curl chromium age $*"
missing=""
for pkg in $packages; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "tidemark: missing Debian packages:$missing" >&2
    echo "  install them as root: apt-get update && apt-get install -y --no-install-recommends$missing" >&2
    exit 1
  fi
  echo "tidemark: installing$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  # shellcheck disable=SC2086
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $missing >/dev/null
fi

# npm ci only when the lock file changed since the last install.
stamp=node_modules/.tidemark-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
