#!/usr/bin/env bash
# Installs the real components the tests talk to, and skips what is already there:
#   - Apache Kafka 4.1.1 (KRaft, broker + controller in one JVM): the jars from Maven Central with
#     `mvn dependency:copy-dependencies` (scripts/testbed/kafka/pom.xml), and a storage directory
#     formatted once as a template that every test broker copies,
#     in ${ENROLLSTREAM_CACHE:-$HOME/.cache/enrollstream}/kafka-4.1.1 (about 15 s, 45 MB), and a
#     class data sharing archive of one broker start (about 10 s, 50 MB) that speeds up each start
#   - FerretDB 1.24.2 (MongoDB wire protocol on SQLite), built with Go from the module proxy
#     into .../ferretdb-1.24.2/bin (about 2 minutes on 2 cores)
#   - only with ENROLLSTREAM_FERRETDB_BACKEND=postgresql (opt-in; SQLite stays the default):
#     Debian's PostgreSQL with apt, and a cluster template in .../postgresql-template that every
#     test FerretDB copies for a PostgreSQL of its own (docs/testbed.md, "FerretDB on PostgreSQL")
#   - aiosmtpd (SMTP server) with pip
#   - playwright-core (drives Debian's chromium for the dashboard's test) with npm, into
#     .../playwright-core-VERSION/node_modules; the browser comes from scripts/install-build-deps.sh
# Then prints the paths that scripts/testbed/env.sh exports for the tests.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${ENROLLSTREAM_CACHE:-$HOME/.cache/enrollstream}"

fail() { echo "testbed install: $*" >&2; exit 1; }

case "${ENROLLSTREAM_FERRETDB_BACKEND:-sqlite}" in
    sqlite | postgresql) ;;
    *) fail "ENROLLSTREAM_FERRETDB_BACKEND=$ENROLLSTREAM_FERRETDB_BACKEND: expected sqlite (the default) or postgresql" ;;
esac

# Pinned: docs/testbed.md describes these versions. KAFKA_VERSION is also in kafka/pom.xml.
KAFKA_VERSION=4.1.1
FERRETDB_VERSION=1.24.2
AIOSMTPD_VERSION=1.4.6
PLAYWRIGHT_CORE_VERSION=1.64.1
FERRETDB_BACKEND="${ENROLLSTREAM_FERRETDB_BACKEND:-sqlite}"
# Any fixed id works: each test broker is a cluster of its own.
KAFKA_CLUSTER_ID=ZW5yb2xsc3RyZWFtLXRlcw

# Two installs at once (two terminals, a test run and CI) must not write the same files.
mkdir -p "$cache"
exec 9>"$cache/install.lock"
if ! flock -n 9; then
    echo "another install of the test bed is running; waiting for it to finish"
    flock 9
fi

java_bin() {
    local java="${ENROLLSTREAM_JAVA:-}"
    if [ -z "$java" ]; then
        java="$(command -v java || true)"
        [ -n "$java" ] || fail "java not found: Kafka 4 needs Java 17 or newer on PATH (or set ENROLLSTREAM_JAVA)"
    fi
    local major
    major="$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    [ -n "$major" ] && [ "${major%%.*}" -ge 17 ] 2>/dev/null \
        || fail "$java is Java ${major:-of unknown version}; Kafka $KAFKA_VERSION needs Java 17 or newer (set ENROLLSTREAM_JAVA)"
    echo "$java"
}

install_kafka() {
    local home="$cache/kafka-$KAFKA_VERSION"
    if [ -f "$home/.complete" ] && cmp -s "$here/kafka/log4j2.properties" "$home/log4j2.properties"; then
        echo "kafka: present at $home"
        return
    fi
    command -v mvn >/dev/null || fail "mvn not found: the Kafka broker's jars are fetched from Maven Central with Maven"
    local java
    java="$(java_bin)"
    rm -rf "$home"
    mkdir -p "$home"
    echo "kafka: fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its dependencies with Maven"
    # The pom's directory stays clean: Maven writes nothing there for this goal.
    if ! mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$home/lib" -Dmdep.includeScope=runtime >"$home/mvn.log" 2>&1; then
        tail -n 40 "$home/mvn.log" >&2
        fail "mvn dependency:copy-dependencies failed (last lines above, full log in $home/mvn.log)"
    fi
    cp "$here/kafka/log4j2.properties" "$home/log4j2.properties"
    # `kafka-storage format` once, into a template: every test broker copies it instead of paying
    # a JVM start (~2 s) for its own format. Ports are not recorded in a formatted directory.
    local template="$home/logdir-template"
    mkdir -p "$template"
    cat >"$home/format.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093
controller.listener.names=CONTROLLER
log.dirs=$template
EOF
    if ! "$java" -cp "$home/lib/*" -Dlog4j2.configurationFile="$home/log4j2.properties" \
        kafka.tools.StorageTool format --cluster-id "$KAFKA_CLUSTER_ID" \
        -c "$home/format.properties" >"$home/format.log" 2>&1; then
        tail -n 40 "$home/format.log" >&2
        fail "kafka-storage format failed (last lines above)"
    fi
    [ -f "$template/meta.properties" ] || fail "kafka-storage format wrote no meta.properties in $template"
    touch "$home/.complete"
    echo "kafka: installed $KAFKA_VERSION in $home ($(du -sh "$home/lib" | cut -f1) of jars)"
}

# A port nothing listens on, for the archive run below.
free_port() {
    local port
    while :; do
        port=$((30000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# Class data sharing: one broker start with -XX:ArchiveClassesAtExit records the classes it
# loads into kafka.jsa, which every test broker then maps instead of reading them from the jars
# (with the client JIT, a start takes a third of the time; docs/testbed.md). The JVM options are
# those of JVM_OPTIONS in crates/testkit/src/testbed/kafka.rs. Without the archive the brokers
# still start, only slower.
install_kafka_class_archive() {
    local home="$cache/kafka-$KAFKA_VERSION"
    local archive="$home/kafka.jsa"
    if [ -f "$archive" ]; then
        echo "kafka: class archive present at $archive"
        return
    fi
    local java run port controller
    java="$(java_bin)"
    run="$(mktemp -d)"
    cp -r "$home/logdir-template" "$run/logs"
    port="$(free_port)"
    controller="$(free_port)"
    cat >"$run/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$run/logs
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
PROPERTIES
    echo "kafka: recording a class archive of one broker start"
    "$java" -Xms64m -Xmx384m -XX:+UseSerialGC -XX:-UsePerfData -XX:TieredStopAtLevel=1 \
        -Djava.awt.headless=true -XX:ArchiveClassesAtExit="$archive.tmp" \
        -Dlog4j2.configurationFile="$home/log4j2.properties" -cp "$home/lib/*" \
        kafka.Kafka "$run/server.properties" >"$home/archive.log" 2>&1 &
    local pid=$! waited=0
    until grep -F "Kafka Server started" "$home/archive.log" >/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || [ "$waited" -ge 1200 ]; then
            kill -9 "$pid" 2>/dev/null || true
            tail -n 40 "$home/archive.log" >&2
            rm -rf "$run" "$archive.tmp"
            fail "the broker for the class archive did not start within 120 s (last lines above)"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    # SIGTERM: a clean stop, at whose exit the JVM writes the archive.
    kill -TERM "$pid"
    wait "$pid" || true
    rm -rf "$run"
    [ -s "$archive.tmp" ] || fail "the JVM wrote no class archive (see $home/archive.log)"
    mv "$archive.tmp" "$archive"
    echo "kafka: class archive of $(du -h "$archive" | cut -f1) at $archive"
}

install_ferretdb() {
    local root="$cache/ferretdb-$FERRETDB_VERSION"
    local bin="$root/bin/ferretdb"
    # grep reads all (no -q): with pipefail, an early exit would fail the pipe on SIGPIPE.
    if "$bin" --version 2>/dev/null | grep -F "v$FERRETDB_VERSION" >/dev/null; then
        echo "ferretdb: present at $bin"
        return
    fi
    command -v go >/dev/null || fail "go not found: FerretDB is built from the Go module proxy"
    # `go install ...@v$FERRETDB_VERSION` builds a binary that panics at start: FerretDB embeds
    # build/version/version.txt, which its module leaves out. So build from a copy of the module
    # with that file written.
    local dir
    dir="$(go mod download -json "github.com/FerretDB/FerretDB@v$FERRETDB_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [ -n "$dir" ] && [ -d "$dir" ] || fail "go mod download github.com/FerretDB/FerretDB@v$FERRETDB_VERSION failed"
    local src="$root/src"
    rm -rf "$src"
    mkdir -p "$root/bin"
    cp -r "$dir" "$src"
    chmod -R u+w "$src"
    echo "v$FERRETDB_VERSION" >"$src/build/version/version.txt"
    echo "ferretdb: building FerretDB v$FERRETDB_VERSION with go (about 2 minutes)"
    if ! (cd "$src" && go build -trimpath -o "$bin" ./cmd/ferretdb) >"$root/build.log" 2>&1; then
        tail -n 40 "$root/build.log" >&2
        fail "go build of FerretDB failed (last lines above, full log in $root/build.log)"
    fi
    rm -rf "$src"
    "$bin" --version | grep -F "v$FERRETDB_VERSION" >/dev/null || fail "FerretDB was built but $bin --version does not say v$FERRETDB_VERSION"
    echo "ferretdb: built $bin"
}

# Debian's PostgreSQL keeps its programs outside PATH, one directory per major version.
postgresql_bindir() {
    if [ -n "${ENROLLSTREAM_POSTGRESQL_BINDIR:-}" ]; then
        echo "$ENROLLSTREAM_POSTGRESQL_BINDIR"
        return
    fi
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$dir" ] && echo "$dir"
}

# PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres system user.
as_cluster_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

install_postgresql() {
    [ "$FERRETDB_BACKEND" = postgresql ] || return 0
    local bindir
    bindir="$(postgresql_bindir || true)"
    if [ -z "$bindir" ] || [ ! -x "$bindir/postgres" ]; then
        # As scripts/install-build-deps.sh: apt, through sudo when not root.
        local sudo=()
        if [ "$(id -u)" -ne 0 ]; then
            command -v sudo >/dev/null || fail "PostgreSQL is not installed and there is no sudo; as root: apt-get install -y postgresql"
            sudo=(sudo)
        fi
        echo "postgresql: installing Debian's postgresql with apt"
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
            || fail "apt-get install postgresql failed"
        bindir="$(postgresql_bindir || true)"
        [ -n "$bindir" ] && [ -x "$bindir/postgres" ] || fail "postgresql was installed but no postgres binary is in /usr/lib/postgresql/*/bin (set ENROLLSTREAM_POSTGRESQL_BINDIR)"
    fi
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || fail "running as root, but there is no postgres system user to own the test clusters"
    fi
    local version
    # The template's layout is part of its version: a change here rebuilds it.
    version="$("$bindir/postgres" --version); wal-segsize 1 MB, no postgres database"
    local home="$cache/postgresql-template"
    if [ -f "$home/.complete" ] && cmp -s "$here/postgresql/gin_twins.sql" "$home/gin_twins.sql" \
        && [ "$(cat "$home/version")" = "$version" ]; then
        echo "postgresql: template present at $home ($version)"
        return
    fi
    rm -rf "$home"
    mkdir -p "$home"
    # Built where the postgres user can reach it (as root, the cache is in root's home), then moved.
    local build
    build="$(mktemp -d)"
    chmod 711 "$build"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$build"
    # Settings FerretDB checks at connect time: UTF8 and a C locale.
    # Every test copies the template: 1 MB WAL segments instead of 16 and no `postgres`
    # database keep the copy at about a third of the default 46 MB.
    if ! as_cluster_owner "$bindir/initdb" -D "$build/data" -U postgres --auth=trust --no-sync \
        -E UTF8 --locale=C.UTF-8 --wal-segsize=1 >"$home/initdb.log" 2>&1; then
        tail -n 40 "$home/initdb.log" >&2
        rm -rf "$build"
        fail "initdb failed (last lines above)"
    fi
    # Started once, without TCP, to install the index trigger and create FerretDB's database.
    if ! as_cluster_owner "$bindir/pg_ctl" -D "$build/data" -l "$build/template.log" -w -t 60 \
        -o "-c listen_addresses= -c unix_socket_directories=$build" start >/dev/null; then
        tail -n 40 "$build/template.log" >&2
        rm -rf "$build"
        fail "the template cluster did not start (last lines above)"
    fi
    local ok=1
    as_cluster_owner "$bindir/psql" -h "$build" -U postgres -d template1 -q -v ON_ERROR_STOP=1 \
        -f - <"$here/postgresql/gin_twins.sql" >"$home/psql.log" 2>&1 \
        && as_cluster_owner "$bindir/psql" -h "$build" -U postgres -d template1 -q -v ON_ERROR_STOP=1 \
            -c "CREATE DATABASE ferretdb" -c "DROP DATABASE postgres" -c "CHECKPOINT" >>"$home/psql.log" 2>&1 \
        || ok=0
    as_cluster_owner "$bindir/pg_ctl" -D "$build/data" -m fast -w stop >/dev/null || ok=0
    if [ "$ok" -ne 1 ]; then
        cat "$home/psql.log" >&2
        rm -rf "$build"
        fail "preparing the template cluster failed (see above)"
    fi
    rm -f "$build/data/postmaster.opts" "$build/data/postmaster.pid"
    mv "$build/data" "$home/data"
    rm -rf "$build"
    cp "$here/postgresql/gin_twins.sql" "$home/gin_twins.sql"
    echo "$version" >"$home/version"
    touch "$home/.complete"
    echo "postgresql: template cluster of $(du -sh "$home/data" | cut -f1) at $home ($version)"
}

install_python_components() {
    local py="${ENROLLSTREAM_PYTHON:-}"
    if [ -z "$py" ]; then
        py="$(command -v python3 || true)"
        [ -n "$py" ] || fail "python3 not found: install Python 3 with pip, or set ENROLLSTREAM_PYTHON"
        py="$("$py" -c 'import sys; print(sys.executable)')"
    fi
    local have
    have="$("$py" -c "import importlib.metadata as m; print(m.version('aiosmtpd'))" 2>/dev/null || true)"
    if [ "$have" = "$AIOSMTPD_VERSION" ]; then
        echo "python components: aiosmtpd $AIOSMTPD_VERSION present for $py"
        return
    fi
    echo "python components: pip installing aiosmtpd==$AIOSMTPD_VERSION for $py"
    "$py" -m pip install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION" \
        || fail "pip install aiosmtpd==$AIOSMTPD_VERSION failed for $py (set ENROLLSTREAM_PYTHON to a python whose pip can install packages)"
    "$py" -c 'import aiosmtpd' || fail "aiosmtpd was installed but does not import in $py"
}

install_playwright_core() {
    local home="$cache/playwright-core-$PLAYWRIGHT_CORE_VERSION"
    if [ -f "$home/node_modules/playwright-core/package.json" ]; then
        echo "playwright-core: present at $home"
        return
    fi
    command -v npm >/dev/null || fail "npm not found: the dashboard's test drives chromium with playwright-core from npm"
    echo "playwright-core: npm installing playwright-core@$PLAYWRIGHT_CORE_VERSION into $home"
    mkdir -p "$home"
    # playwright-core has no install script and downloads no browser.
    npm install --silent --no-audit --no-fund --prefix "$home" "playwright-core@$PLAYWRIGHT_CORE_VERSION" \
        || fail "npm install playwright-core@$PLAYWRIGHT_CORE_VERSION failed"
}

install_kafka
install_kafka_class_archive
install_ferretdb
install_postgresql
install_python_components
install_playwright_core

# shellcheck source=env.sh
source "$here/env.sh"
[ -n "$ENROLLSTREAM_JAVA" ] || fail "java not found for the tests (set ENROLLSTREAM_JAVA)"
echo "testbed ready:"
echo "  ENROLLSTREAM_KAFKA_HOME=$ENROLLSTREAM_KAFKA_HOME"
echo "  ENROLLSTREAM_JAVA=$ENROLLSTREAM_JAVA"
echo "  ENROLLSTREAM_FERRETDB_BIN=$ENROLLSTREAM_FERRETDB_BIN"
if [ "$FERRETDB_BACKEND" = postgresql ]; then
    echo "  ENROLLSTREAM_FERRETDB_BACKEND=postgresql (ENROLLSTREAM_POSTGRESQL_BINDIR=$ENROLLSTREAM_POSTGRESQL_BINDIR)"
fi
echo "  ENROLLSTREAM_PYTHON=$ENROLLSTREAM_PYTHON"
echo "  ENROLLSTREAM_PLAYWRIGHT=$ENROLLSTREAM_PLAYWRIGHT"
echo "  ENROLLSTREAM_CHROMIUM=$ENROLLSTREAM_CHROMIUM"
