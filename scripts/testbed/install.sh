#!/usr/bin/env bash
# Installs the real components the tests talk to, and skips what is already there:
#   - tansu 0.6.0 (Kafka-protocol broker) with the libsql storage engine, built with cargo into
#     ${ENROLLSTREAM_CACHE:-$HOME/.cache/enrollstream}/tansu-0.6.0-libsql (cold build ~20 min)
#   - nx-27017 (MongoDB-protocol server) and aiosmtpd (SMTP server) with pip
# Then prints the paths that scripts/testbed/env.sh exports for the tests.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${ENROLLSTREAM_CACHE:-$HOME/.cache/enrollstream}"

fail() { echo "testbed install: $*" >&2; exit 1; }

# Pinned: these are the versions whose behaviour /work/shared/testbed.md describes.
TANSU_VERSION=0.6.0
NX27017_VERSION=0.8.1
AIOSMTPD_VERSION=1.4.6

install_tansu() {
    local root="$cache/tansu-$TANSU_VERSION-libsql"
    local bin="$root/bin/tansu"
    if [ -n "${ENROLLSTREAM_TANSU_BIN:-}" ] && "$ENROLLSTREAM_TANSU_BIN" --version >/dev/null 2>&1; then
        echo "tansu: using ENROLLSTREAM_TANSU_BIN=$ENROLLSTREAM_TANSU_BIN"
        return
    fi
    if "$bin" --version 2>/dev/null | grep -qF "$TANSU_VERSION"; then
        echo "tansu: present at $bin"
        return
    fi
    command -v cargo >/dev/null || fail "cargo not found: tansu is built from crates.io with cargo"
    mkdir -p "$cache"
    # Two installs at once (two terminals, a test run and CI) must not build it twice.
    exec 9>"$cache/tansu.lock"
    if ! flock -n 9; then
        echo "tansu: another install is building it; waiting for it to finish"
        flock 9
    fi
    if "$bin" --version 2>/dev/null | grep -qF "$TANSU_VERSION"; then
        echo "tansu: present at $bin"
        return
    fi
    local log="$cache/tansu-build.log"
    # A kept target dir lets an interrupted build resume instead of starting over.
    local target="$cache/tansu-build-target"
    echo "tansu: building tansu $TANSU_VERSION (features libsql) with cargo install."
    echo "tansu: a cold build takes about 20 minutes on 2 cores; progress every minute, full log in $log"
    # sleep must not hold stdout: a reader of this script's output would wait for it.
    ( while sleep 60 </dev/null >/dev/null 2>&1; do
        echo "tansu: still building, $(grep -c '^ *Compiling' "$log" 2>/dev/null || echo 0) crates compiled so far"
      done ) &
    local heartbeat=$!
    # shellcheck disable=SC2064
    trap "kill $heartbeat 2>/dev/null || true" EXIT
    if ! cargo install tansu --version "$TANSU_VERSION" --locked --features libsql \
        --root "$root" --target-dir "$target" >"$log" 2>&1; then
        kill "$heartbeat" 2>/dev/null || true
        tail -n 40 "$log" >&2
        fail "cargo install tansu failed (last lines above, full log in $log)"
    fi
    kill "$heartbeat" 2>/dev/null || true
    trap - EXIT
    rm -rf "$target"
    "$bin" --version >/dev/null || fail "tansu was built but $bin --version does not run"
    echo "tansu: built $bin"
}

install_python_components() {
    local py="${ENROLLSTREAM_PYTHON:-}"
    if [ -z "$py" ]; then
        py="$(command -v python3 || true)"
        [ -n "$py" ] || fail "python3 not found: install Python 3 with pip, or set ENROLLSTREAM_PYTHON"
        py="$("$py" -c 'import sys; print(sys.executable)')"
    fi
    version_of() {
        "$py" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true
    }
    local wanted=()
    [ "$(version_of nx-27017)" = "$NX27017_VERSION" ] || wanted+=("nx-27017==$NX27017_VERSION")
    [ "$(version_of aiosmtpd)" = "$AIOSMTPD_VERSION" ] || wanted+=("aiosmtpd==$AIOSMTPD_VERSION")
    if [ "${#wanted[@]}" -eq 0 ]; then
        echo "python components: nx-27017 $NX27017_VERSION and aiosmtpd $AIOSMTPD_VERSION present for $py"
        return
    fi
    echo "python components: pip installing ${wanted[*]} for $py"
    "$py" -m pip install --quiet --disable-pip-version-check "${wanted[@]}" \
        || fail "pip install ${wanted[*]} failed for $py (set ENROLLSTREAM_PYTHON to a python whose pip can install packages)"
    "$py" -c 'import aiosmtpd' || fail "aiosmtpd was installed but does not import in $py"
}

install_tansu
install_python_components

# shellcheck source=env.sh
source "$here/env.sh"
[ -x "$ENROLLSTREAM_NX27017_BIN" ] || fail "nx-27017 is installed but its script was not found (set ENROLLSTREAM_NX27017_BIN)"
echo "testbed ready:"
echo "  ENROLLSTREAM_TANSU_BIN=$ENROLLSTREAM_TANSU_BIN"
echo "  ENROLLSTREAM_NX27017_BIN=$ENROLLSTREAM_NX27017_BIN"
echo "  ENROLLSTREAM_PYTHON=$ENROLLSTREAM_PYTHON"
