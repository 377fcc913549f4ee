#!/usr/bin/env bash
# Installs the Debian 12 packages berth needs to build, test and run its demo.
# Idempotent: apt-get runs only when a package is missing.
set -euo pipefail
. "$(dirname "$0")/as-root.sh"
packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libboost1.81-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libnl-3-dev libnl-route-3-dev libudev-dev libsystemd-dev
  libgtest-dev libgmock-dev libbenchmark-dev prometheus-cpp-dev
  iproute2 iputils-ping runc busybox-static procps kmod
  slurm-wlm munge jq prometheus lintian dpkg-dev systemd
  chromium socat nodejs npm fonts-dejavu-core
  libssl-dev openssl libsimdjson-dev lxc curl libibverbs-dev dbus-daemon bpftool
)
missing=()
for p in "${packages[@]}"; do
  # Node.js from elsewhere (NodeSource) already brings npm and conflicts with Debian's.
  case $p in nodejs | npm) command -v "${p/nodejs/node}" >/dev/null 2>&1 && continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all packages present"
fi
