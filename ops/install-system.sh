#!/usr/bin/env bash
# Install the Debian packages movierec needs, only those missing. Safe to re-run.
# Usage: ops/install-system.sh [package ...]   (default: what the core and the tests need)
# libsuitesparse-dev (CHOLMOD) and a compiler: scikit-sparse, which sansa trains with, builds
# from source against them (PyPI has no wheel of it).
set -euo pipefail
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(postgresql-15 postgresql-contrib pgbackrest haproxy redis-server etcd-server python3.11-venv python3.11-dev build-essential libsuitesparse-dev)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
