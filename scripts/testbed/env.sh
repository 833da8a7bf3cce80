# Sourced (not run): exports where the test components live, for crates/testkit's testbed helpers.
#   ENROLLSTREAM_KAFKA_HOME    Apache Kafka's jars (lib/), log config and formatted storage template
#   ENROLLSTREAM_JAVA          the java (17 or newer) that runs the broker
#   ENROLLSTREAM_FERRETDB_BIN  FerretDB (MongoDB wire protocol on SQLite)
#   ENROLLSTREAM_POSTGRESQL_BINDIR  Debian's PostgreSQL programs, for the opt-in
#                              ENROLLSTREAM_FERRETDB_BACKEND=postgresql (only when installed)
#   ENROLLSTREAM_PYTHON        the python that has aiosmtpd (SMTP server: python -m aiosmtpd)
#   ENROLLSTREAM_PLAYWRIGHT    the node_modules holding playwright-core (the dashboard's test)
#   ENROLLSTREAM_CHROMIUM      the chromium it drives
# Values already in the environment win, so a person can point the tests at their own builds.
# `bash scripts/testbed/install.sh` installs the components at these paths.

_es_cache="${ENROLLSTREAM_CACHE:-$HOME/.cache/enrollstream}"

export ENROLLSTREAM_KAFKA_HOME="${ENROLLSTREAM_KAFKA_HOME:-$_es_cache/kafka-4.1.1}"
export ENROLLSTREAM_FERRETDB_BIN="${ENROLLSTREAM_FERRETDB_BIN:-$_es_cache/ferretdb-1.24.2/bin/ferretdb}"
export ENROLLSTREAM_PLAYWRIGHT="${ENROLLSTREAM_PLAYWRIGHT:-$_es_cache/playwright-core-1.64.1/node_modules}"
export ENROLLSTREAM_CHROMIUM="${ENROLLSTREAM_CHROMIUM:-/usr/bin/chromium}"

# The real binaries, not wrappers: the helpers signal the process they start, and a shell or a
# pyenv shim in between would keep the real one running.
if [ -z "${ENROLLSTREAM_JAVA:-}" ]; then
    ENROLLSTREAM_JAVA="$(readlink -f "$(command -v java 2>/dev/null)" 2>/dev/null || true)"
fi
export ENROLLSTREAM_JAVA
if [ -z "${ENROLLSTREAM_PYTHON:-}" ]; then
    ENROLLSTREAM_PYTHON="$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)"
fi
export ENROLLSTREAM_PYTHON

if [ -z "${ENROLLSTREAM_POSTGRESQL_BINDIR:-}" ]; then
    ENROLLSTREAM_POSTGRESQL_BINDIR="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
fi
if [ -n "$ENROLLSTREAM_POSTGRESQL_BINDIR" ]; then
    export ENROLLSTREAM_POSTGRESQL_BINDIR
else
    unset ENROLLSTREAM_POSTGRESQL_BINDIR
fi

unset _es_cache
