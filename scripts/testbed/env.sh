# Sourced (not run): exports where the test components live, for crates/testkit's testbed helpers.
#   ENROLLSTREAM_TANSU_BIN    tansu 0.6.0 built with libsql (Kafka-protocol broker)
#   ENROLLSTREAM_NX27017_BIN  nx-27017 (MongoDB-protocol server)
#   ENROLLSTREAM_PYTHON       the python that has aiosmtpd (SMTP server: python -m aiosmtpd)
# Values already in the environment win, so a person can point the tests at their own builds.
# `bash scripts/testbed/install.sh` installs the components at these paths.

_es_cache="${ENROLLSTREAM_CACHE:-$HOME/.cache/enrollstream}"

if [ -z "${ENROLLSTREAM_TANSU_BIN:-}" ]; then
    ENROLLSTREAM_TANSU_BIN="$_es_cache/tansu-0.6.0-libsql/bin/tansu"
fi
export ENROLLSTREAM_TANSU_BIN

# The real interpreter, not a pyenv shim: the helpers signal the process they start, and a shim
# would put a shell in between.
if [ -z "${ENROLLSTREAM_PYTHON:-}" ]; then
    ENROLLSTREAM_PYTHON="$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)"
fi
export ENROLLSTREAM_PYTHON

# pip puts console scripts in the interpreter's scripts dir, or the user's one for `--user`.
if [ -z "${ENROLLSTREAM_NX27017_BIN:-}" ] && [ -n "$ENROLLSTREAM_PYTHON" ]; then
    ENROLLSTREAM_NX27017_BIN="$("$ENROLLSTREAM_PYTHON" - <<'PY' 2>/dev/null || true
import os, shutil, sysconfig
for scheme in (sysconfig.get_default_scheme(), f"{os.name}_user"):
    path = os.path.join(sysconfig.get_path("scripts", scheme), "nx-27017")
    if os.access(path, os.X_OK):
        print(path)
        break
else:
    print(shutil.which("nx-27017") or "")
PY
)"
fi
export ENROLLSTREAM_NX27017_BIN="${ENROLLSTREAM_NX27017_BIN:-}"

unset _es_cache
