#!/usr/bin/env bash
# Installs the Debian packages needed to BUILD the workspace.
# rdkafka builds its vendored librdkafka 2.12 (Debian's is 2.0.2, years of client fixes older),
# which needs cmake, a C++ compiler, curl, OpenSSL, SASL and zlib headers. apt runs only when something is missing.
# Also Debian's chromium, the browser the dashboard's end-to-end test drives (tests/it/ui.rs):
# browser test tools cannot download their own browser here.
set -euo pipefail

packages=(cmake g++ pkg-config libcurl4-openssl-dev libssl-dev libsasl2-dev zlib1g-dev chromium)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "build deps: all present (${packages[*]})"
    exit 0
fi

echo "build deps: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "build deps: not root and no sudo; install as root: apt-get install -y ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "build deps: installed ${missing[*]}"
