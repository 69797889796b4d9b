#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are not installed yet.
# Runs `apt-get update` first (a fresh machine has no package lists). Needs root; without
# root it prints the command to run and fails.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install_deps: installing ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
  echo "install_deps: not root; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" > /tmp/qlib-apt.log 2>&1 || {
  tail -20 /tmp/qlib-apt.log >&2
  exit 1
}
