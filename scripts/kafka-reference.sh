#!/usr/bin/env bash
# Reference Apache Kafka for Weir's client tests: a single KRaft node (broker + controller)
# run from jars on Maven Central with the machine's Java. No tarball, no Docker.
#
#   scripts/kafka-reference.sh fetch
#   scripts/kafka-reference.sh start --data-dir D [--port P] [--controller-port C] [--log FILE] [--timeout S]
#                                    [--ssl-port S --ssl-keystore PEM --ssl-truststore PEM [--mtls-port M]
#                                     [--sasl-port P --scram-user NAME=PASSWORD ...]]
# --mtls-port adds a listener MTLS, SSL with client certificates required (signed by the
# truststore's CA).
#   scripts/kafka-reference.sh stop  --data-dir D [--timeout S]
#   scripts/kafka-reference.sh status --data-dir D
#   scripts/kafka-reference.sh libs            # print the classpath folder (after fetch)
#
# `start` prints the bootstrap address (127.0.0.1:P) on stdout once the broker answers a
# Metadata request listing itself; everything else goes to stderr. The broker's own output
# (log4j2 and stdout/stderr of the JVM) goes to --log, default D/kafka.log.
#
# Environment:
#   KAFKA_VERSION      Kafka release from Maven Central (default below). 4.4.0 is listed on
#                      Central but incomplete there (no kafka-tools-api 4.4.0), hence 4.3.1.
#   LOG4J_VERSION      log4j2 release matching that Kafka (only needed with KAFKA_VERSION).
#   WEIR_CACHE_DIR     cache root, default ~/.cache/weir; jars go to kafka-<version>/libs.
#   KAFKA_HEAP_OPTS    default "-Xmx512m -Xms128m" (the machine is small and shared).
#   KAFKA_JVM_OPTS     extra JVM flags, default: serial GC, C1 only (fast start, few threads).
#   KAFKA_CLUSTER_ID   cluster id for a new data dir (default: random).
#   PYTHON             python3 used for the readiness probe (stdlib only).
set -euo pipefail

KAFKA_VERSION=${KAFKA_VERSION:-4.3.1}
LOG4J_VERSION=${LOG4J_VERSION:-2.25.4}
SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${WEIR_CACHE_DIR:-$HOME/.cache/weir}
KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
LIBS=$KAFKA_HOME/libs
PYTHON=${PYTHON:-python3}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx512m -Xms128m}
KAFKA_JVM_OPTS=${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}

log() { echo "kafka-reference: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# fetch: copy the broker's runtime classpath into $LIBS once per version. The marker file is
# written last, so an interrupted fetch is redone; flock serialises concurrent fetches.
cmd_fetch() {
    if [[ -f $KAFKA_HOME/.complete ]]; then
        echo "$LIBS"
        return
    fi
    command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
    command -v java >/dev/null || die "java not found (Java 17+ is needed by Kafka 4)"
    mkdir -p "$KAFKA_HOME"
    exec 9>"$KAFKA_HOME/.lock"
    flock 9
    if [[ -f $KAFKA_HOME/.complete ]]; then
        echo "$LIBS"
        return
    fi
    local tmp start=$SECONDS
    tmp=$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")
    log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
    if ! mvn -B -q -f "$SCRIPTS_DIR/kafka-reference/pom.xml" \
        -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$tmp" >"$KAFKA_HOME/fetch.log" 2>&1; then
        tail -n 30 "$KAFKA_HOME/fetch.log" >&2
        rm -rf "$tmp"
        die "mvn failed; full log in $KAFKA_HOME/fetch.log"
    fi
    [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    ls "$LIBS" >"$KAFKA_HOME/.complete"
    log "fetched $(find "$LIBS" -name "*.jar" | wc -l) jars in $((SECONDS - start))s"
    echo "$LIBS"
}

# Pid from D/kafka.pid if that process is alive and is our broker for D.
running_pid() {
    local data=$1 pid
    [[ -f $data/kafka.pid ]] || return 1
    pid=$(<"$data/kafka.pid")
    [[ -r /proc/$pid/cmdline ]] || return 1
    # Guards against a recycled pid: the command line names this data dir's server.properties.
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$data/server.properties" || return 1
    echo "$pid"
}

# free_port [EXCLUDED_PORT...]: a free port on 127.0.0.1 other than the ones given.
free_port() {
    local args=() p
    for p in "$@"; do [[ -n $p ]] && args+=(--exclude "$p"); done
    "$PYTHON" "$SCRIPTS_DIR/kafka_probe.py" free-port "${args[@]}"
}

write_config() {
    local data=$1 port=$2 cport=$3 sslport=$4 keystore=$5 truststore=$6 mtlsport=$7 saslport=$8
    local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
    local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if [[ -n $sslport ]]; then
        listeners+=",SSL://127.0.0.1:$sslport"
        protocols+=",SSL:SSL"
    fi
    if [[ -n $mtlsport ]]; then
        listeners+=",MTLS://127.0.0.1:$mtlsport"
        protocols+=",MTLS:SSL"
    fi
    if [[ -n $saslport ]]; then
        listeners+=",SASL_SSL://127.0.0.1:$saslport"
        protocols+=",SASL_SSL:SASL_SSL"
    fi
    cat >"$data/server.properties" <<EOF
# Written by scripts/kafka-reference.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$listeners
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
log.dirs=$data/kraft-logs
num.partitions=1
auto.create.topics.enable=true
# A single node: every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    if [[ -n $sslport ]]; then
        # KIP-651 PEM stores: the key and its chain in one file, the CA in another.
        cat >>"$data/server.properties" <<EOF
ssl.keystore.type=PEM
ssl.keystore.location=$keystore
ssl.truststore.type=PEM
ssl.truststore.location=$truststore
ssl.client.auth=none
listener.name.mtls.ssl.client.auth=required
EOF
    fi
    if [[ -n $saslport ]]; then
        # SCRAM users live in the metadata log (formatted with --add-scram); PLAIN checks the
        # same users' passwords, listed in its JAAS entry, as Weir's PLAIN checks SCRAM's.
        local plain_users="" u
        for u in "${SCRAM_USERS[@]}"; do
            plain_users+=" user_${u%%=*}=\"${u#*=}\""
        done
        cat >>"$data/server.properties" <<EOF
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$plain_users;
# ACLs (ResourceType.BROKER is the cluster in confluent-kafka), open where none is set (as the tests' Weir): the PLAINTEXT listeners (the controller's
# included) are ANONYMOUS, a super user, and so is admin.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:admin
allow.everyone.if.no.acl.found=true
EOF
    fi
    # log4j2 writes to stdout, which start() sends to the log file with the JVM's own output.
    cat >"$data/log4j2.properties" <<EOF
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
}

cmd_start() {
    local port="" cport="" data="" logfile="" timeout=120 sslport="" keystore="" truststore="" mtlsport=""
    local saslport=""
    SCRAM_USERS=()
    while (($#)); do
        case $1 in
            --port) port=$2; shift 2 ;;
            --sasl-port) saslport=$2; shift 2 ;;
            --scram-user) SCRAM_USERS+=("$2"); shift 2 ;;
            --ssl-port) sslport=$2; shift 2 ;;
            --ssl-keystore) keystore=$2; shift 2 ;;
            --ssl-truststore) truststore=$2; shift 2 ;;
            --mtls-port) mtlsport=$2; shift 2 ;;
            --controller-port) cport=$2; shift 2 ;;
            --data-dir) data=$2; shift 2 ;;
            --log) logfile=$2; shift 2 ;;
            --timeout) timeout=$2; shift 2 ;;
            *) die "start: unknown argument $1" ;;
        esac
    done
    [[ -n $data ]] || die "start: --data-dir is required"
    if [[ ( -n $sslport || -n $mtlsport || -n $saslport ) && ( -z $sslport || -z $keystore || -z $truststore ) ]]; then
        die "start: --ssl-port, --mtls-port and --sasl-port need --ssl-port, --ssl-keystore and --ssl-truststore (PEM files)"
    fi
    local u
    for u in "${SCRAM_USERS[@]}"; do
        [[ $u == *=* && $u != *[\"\ ,]* ]] || die "start: --scram-user is NAME=PASSWORD, without quotes, spaces or commas"
    done
    mkdir -p "$data"
    data=$(cd "$data" && pwd)
    logfile=${logfile:-$data/kafka.log}
    mkdir -p "$(dirname "$logfile")"

    if pid=$(running_pid "$data"); then
        die "already running (pid $pid) for $data; stop it first"
    fi
    cmd_fetch >/dev/null

    # A formatted dir keeps its controller port: with a dynamic quorum (--standalone) the
    # voter's endpoint is stored in the metadata log, not only in server.properties.
    if [[ -f $data/kraft-logs/meta.properties && -z $cport && -f $data/server.properties ]]; then
        cport=$(sed -n 's/^controller.quorum.bootstrap.servers=127.0.0.1://p' "$data/server.properties")
    fi
    port=${port:-$(free_port "$cport")}
    cport=${cport:-$(free_port "$port")}
    [[ $port != "$cport" ]] || die "broker and controller ports must differ"
    local p
    for p in "$port" "$cport"; do
        if "$PYTHON" "$SCRIPTS_DIR/kafka_probe.py" in-use --bootstrap "127.0.0.1:$p"; then
            die "port $p on 127.0.0.1 is already in use"
        fi
    done
    write_config "$data" "$port" "$cport" "$sslport" "$keystore" "$truststore" "$mtlsport" "$saslport"

    local cp="$LIBS/*"
    if [[ ! -f $data/kraft-logs/meta.properties ]]; then
        # Never starting with '-', as Kafka's own Uuid.randomUuid() ensures: kafka-storage's
        # argument parser takes "--cluster-id -3Un..." for a missing value (1 run in 64 failed).
        local cluster_id=${KAFKA_CLUSTER_ID:-$("$PYTHON" -c '
import base64, uuid
while True:
    id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not id.startswith("-"):
        print(id)
        break
')}
        log "formatting $data/kraft-logs (cluster id $cluster_id)"
        # shellcheck disable=SC2086
        local scram=() mech
        for u in "${SCRAM_USERS[@]}"; do
            for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
                scram+=(--add-scram "$mech=[name=${u%%=*},password=${u#*=}]")
            done
        done
        if ! java $KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS -cp "$cp" \
            -Dlog4j2.configurationFile="$data/log4j2.properties" \
            kafka.tools.StorageTool format --standalone \
            --cluster-id="$cluster_id" --config "$data/server.properties" "${scram[@]}" >>"$logfile" 2>&1; then
            tail -n 30 "$logfile" >&2
            die "formatting KRaft storage failed; see $logfile"
        fi
    fi

    log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$port (controller 127.0.0.1:$cport), log $logfile"
    # setsid: the broker outlives this script and is not in the caller's process group, so a
    # Ctrl-C aimed at a test runner reaches the runner, whose teardown calls `stop`.
    # shellcheck disable=SC2086
    setsid java $KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS -cp "$cp" \
        -Dlog4j2.configurationFile="$data/log4j2.properties" \
        -Dkafka.logs.dir="$data/logs" \
        kafka.Kafka "$data/server.properties" >>"$logfile" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$data/kafka.pid"

    local start=$SECONDS
    if ! "$PYTHON" "$SCRIPTS_DIR/kafka_probe.py" wait --bootstrap "127.0.0.1:$port" \
        --timeout "$timeout" --pid "$pid" --owner >/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$data/kafka.pid"
        tail -n 40 "$logfile" >&2
        die "Kafka did not become ready; see $logfile"
    fi
    log "ready in $((SECONDS - start))s (pid $pid)"
    echo "127.0.0.1:$port"
}

cmd_stop() {
    local data="" timeout=60
    while (($#)); do
        case $1 in
            --data-dir) data=$2; shift 2 ;;
            --timeout) timeout=$2; shift 2 ;;
            *) die "stop: unknown argument $1" ;;
        esac
    done
    [[ -n $data ]] || die "stop: --data-dir is required"
    [[ -d $data ]] || { log "no data dir $data: not running"; return; }
    data=$(cd "$data" && pwd)
    local pid
    if ! pid=$(running_pid "$data"); then
        log "not running ($data)"
        rm -f "$data/kafka.pid"
        return
    fi
    # SIGTERM runs Kafka's controlled shutdown; escalate if it has not finished in time.
    kill -TERM "$pid"
    local deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "pid $pid still alive after ${timeout}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            timeout=10
        fi
        sleep 0.1 # poll interval while waiting for the process to exit
    done
    rm -f "$data/kafka.pid"
    log "stopped (pid $pid)"
}

cmd_status() {
    local data=""
    while (($#)); do
        case $1 in
            --data-dir) data=$2; shift 2 ;;
            *) die "status: unknown argument $1" ;;
        esac
    done
    [[ -n $data && -d $data ]] || die "status: --data-dir must exist"
    data=$(cd "$data" && pwd)
    local pid port
    if pid=$(running_pid "$data"); then
        port=$(sed -n 's/^listeners=PLAINTEXT:\/\/127.0.0.1:\([0-9]*\),.*/\1/p' "$data/server.properties")
        echo "running pid=$pid bootstrap=127.0.0.1:$port"
    else
        echo "stopped"
        return 3
    fi
}

(($#)) || usage
cmd=$1
shift
case $cmd in
    fetch) cmd_fetch ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    libs) [[ -f $KAFKA_HOME/.complete ]] || die "not fetched; run: $0 fetch"; echo "$LIBS" ;;
    -h | --help | help) usage ;;
    *) usage ;;
esac
