#!/usr/bin/env bash
# Installs what building and testing Meshwork needs on Debian or Ubuntu, and only what is
# missing: a Swift 6 toolchain (through swiftly, swift.org's installer, when no `swift` is
# on PATH), libsodium-dev and pkg-config, make. Used by `make demo` and `make test`.
# Without root it uses sudo for apt-get.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

if ! pkg-config --exists libsodium 2>/dev/null; then
  echo "meshwork: installing libsodium-dev and pkg-config with apt-get..."
  apt_install libsodium-dev pkg-config
fi

swift_bin() {
  if command -v swift >/dev/null 2>&1; then command -v swift; return; fi
  local s="${SWIFTLY_HOME_DIR:-$HOME/.local/share/swiftly}/bin/swift"
  if [ -x "$s" ]; then echo "$s"; fi
}

if [ -z "$(swift_bin)" ]; then
  echo "meshwork: no Swift toolchain found; installing the latest release with swiftly (https://www.swift.org/install/linux/)..."
  # The toolchain's own run-time needs (swift.org's list for Debian 12 / Ubuntu 22.04+).
  apt_install curl ca-certificates gnupg2 git binutils libc6-dev libcurl4-openssl-dev libedit2 \
    libpython3-dev libsqlite3-0 libxml2-dev libncurses-dev libz3-dev tzdata zlib1g-dev unzip
  stdcxx="$(apt-cache --names-only search '^libstdc\+\+-1[2-4]-dev$' | sort -r | head -1 | cut -d' ' -f1)"
  if [ -n "$stdcxx" ]; then apt_install "$stdcxx"; fi
  tmp="$(mktemp -d)"
  (cd "$tmp" && curl -fsSLO "https://download.swift.org/swiftly/linux/swiftly-$(uname -m).tar.gz" \
    && tar zxf "swiftly-$(uname -m).tar.gz" && ./swiftly init --assume-yes --quiet-shell-followup)
  rm -rf "$tmp"
  echo "meshwork: Swift installed under ${SWIFTLY_HOME_DIR:-$HOME/.local/share/swiftly}; new shells find it on PATH."
fi

version="$("$(swift_bin)" --version 2>/dev/null | sed -n 's/.*Swift version \([0-9][0-9]*\)\..*/\1/p' | head -1)"
if [ -n "$version" ] && [ "$version" -lt 6 ]; then
  echo "meshwork: Swift $version found at $(swift_bin); Meshwork needs Swift 6.0 or newer (https://www.swift.org/install/linux/)" >&2
  exit 1
fi
