#!/usr/bin/env bash
# Run a throw-away RabbitMQ on loopback for amqplike-bench:  rabbitmq.sh start|stop|status
#
#   start   install Debian's rabbitmq-server when missing, start one node bound to
#           127.0.0.1 (AMQP, Erlang distribution and epmd alike) with its state under a
#           fresh temporary directory, wait until it is up, and print its AMQP port alone
#           on stdout.  Starting a node that is already running just prints its port.
#   stop    stop that node, the epmd this script started (never one it found running)
#           and remove the temporary directory.  Stopping nothing is not an error.
#   status  print the AMQP port and exit 0 when the node is up, exit 3 when it is not.
#   pid     print the pid of the node's Erlang VM (beam.smp), for CPU and RSS figures.
#
# Debian's package cannot start the service here (policy-rc.d refuses it and there is
# no systemd), which is expected: the node is started by hand, as the rabbitmq user
# when run as root.  Messages go to stderr; stdout carries only the port.
#
# Environment (all optional):
#   RABBITMQ_NODE_PORT   AMQP port                         (5672)
#   RABBITMQ_DIST_PORT   Erlang distribution port          (25672)
#   ERL_EPMD_PORT        epmd port                         (4369)
#   RABBITMQ_NODENAME    node name                         (rabbit@localhost)
#   AMQPLIKE_RABBITMQ_STATE  where start records what stop undoes
#                        (${TMPDIR:-/tmp}/amqplike-rabbitmq.state)
set -euo pipefail

PORT="${RABBITMQ_NODE_PORT:-5672}"
DIST_PORT="${RABBITMQ_DIST_PORT:-25672}"
EPMD_PORT="${ERL_EPMD_PORT:-4369}"
NODENAME="${RABBITMQ_NODENAME:-rabbit@localhost}"
STATE_FILE="${AMQPLIKE_RABBITMQ_STATE:-${TMPDIR:-/tmp}/amqplike-rabbitmq.state}"
RABBIT_BIN=/usr/lib/rabbitmq/bin
RABBIT_USER=rabbitmq
START_TIMEOUT_SECONDS=60
LOOPBACK_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"

say() { printf 'rabbitmq.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Run a command as the rabbitmq user (whose home holds the Erlang cookie the node and
# rabbitmqctl must share) when we are root; as ourselves otherwise.  An array, not a
# function, so that `setsid` and `&` run the command itself and `$!` is its pid.  Set
# after the install, which creates the user.
AS_RABBIT=(env)
set_run_as() {
    if [ "$(id -u)" = 0 ]; then
        local home
        home="$(getent passwd "$RABBIT_USER" | cut -d: -f6)"
        AS_RABBIT=(setpriv "--reuid=$RABBIT_USER" "--regid=$RABBIT_USER" --init-groups
            env "HOME=$home")
    fi
}
as_rabbit() { "${AS_RABBIT[@]}" "$@"; }

# The environment every RabbitMQ script needs to find this node, and only this node.
node_env() {
    local base="$1"
    export RABBITMQ_NODENAME="$NODENAME"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$PORT"
    export RABBITMQ_DIST_PORT="$DIST_PORT"
    export ERL_EPMD_ADDRESS=127.0.0.1
    export ERL_EPMD_PORT="$EPMD_PORT"
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$LOOPBACK_ERL_ARGS"
    # rabbitmqctl is itself a distributed Erlang node: keep its listener on loopback too.
    export RABBITMQ_CTL_ERL_ARGS="$LOOPBACK_ERL_ARGS"
    export RABBITMQ_BASE="$base"
    export RABBITMQ_MNESIA_BASE="$base/mnesia"
    export RABBITMQ_LOG_BASE="$base/log"
    export RABBITMQ_PID_FILE="$base/rabbit.pid"
    # Default settings, whatever /etc/rabbitmq holds: no env file, config or plugins.
    export RABBITMQ_CONF_ENV_FILE="$base/rabbitmq-env.conf"
    export RABBITMQ_CONFIG_FILE="$base/rabbitmq"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$base/advanced.config"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins"
}

ctl() { as_rabbit "$RABBIT_BIN/rabbitmqctl" -n "$NODENAME" "$@"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Is pid $1 alive and still one of ours (its command line names rabbitmq or epmd)?  A
# state file that outlived a reboot must not make us signal whoever has the pid now.
alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qE 'rabbitmq|epmd'
}

install_if_missing() {
    [ -x "$RABBIT_BIN/rabbitmq-server" ] && return 0
    say "installing Debian's rabbitmq-server"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    # The package's own start is refused by policy-rc.d (and there is no systemd): the
    # postinst reports that and carries on, so only apt-get's exit status matters.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q rabbitmq-server >&2 || {
        $sudo apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q rabbitmq-server >&2
    }
    [ -x "$RABBIT_BIN/rabbitmq-server" ] || die "rabbitmq-server did not install"
}

load_state() {
    BASE="" SERVER_PID="" EPMD_PID=""
    # shellcheck disable=SC1090
    [ -f "$STATE_FILE" ] && . "$STATE_FILE"
    if [ -n "$BASE" ]; then node_env "$BASE"; fi
    if [ -x "$RABBIT_BIN/rabbitmq-server" ]; then set_run_as; fi
}

running() {
    alive "$SERVER_PID" && ctl status >/dev/null 2>&1
}

# Undo whatever the state file records, quietly: the node, our epmd, the directory.
teardown() {
    if alive "$SERVER_PID"; then
        ctl stop "$BASE/rabbit.pid" >/dev/null 2>&1 || true
        if alive "$SERVER_PID"; then
            kill -TERM "$SERVER_PID" 2>/dev/null || true
            for _ in $(seq 50); do alive "$SERVER_PID" || break; sleep 0.2; done
            alive "$SERVER_PID" && kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
    fi
    if alive "$EPMD_PID"; then
        kill -TERM "$EPMD_PID" 2>/dev/null || true
    fi
    if [ -n "$BASE" ] && [ -d "$BASE" ]; then rm -rf -- "$BASE"; fi
    rm -f -- "$STATE_FILE"
}

cmd_start() {
    load_state
    if running; then
        say "already running ($NODENAME, state in $BASE)"
        echo "$PORT"
        return 0
    fi
    teardown  # a stale state file from a node that died
    install_if_missing
    set_run_as
    port_open "$PORT" && die "127.0.0.1:$PORT is already in use (set RABBITMQ_NODE_PORT)"
    port_open "$DIST_PORT" && die "127.0.0.1:$DIST_PORT is already in use (set RABBITMQ_DIST_PORT)"

    BASE="$(mktemp -d "${TMPDIR:-/tmp}/amqplike-rabbitmq.XXXXXX")"
    mkdir -p "$BASE/mnesia" "$BASE/log"
    echo "[]." >"$BASE/enabled_plugins"
    : >"$BASE/rabbitmq-env.conf"
    [ "$(id -u)" = 0 ] && chown -R "$RABBIT_USER:$RABBIT_USER" "$BASE"
    chmod 755 "$BASE"
    node_env "$BASE"
    EPMD_PID="" SERVER_PID=""
    write_state() {
        printf 'BASE=%q\nSERVER_PID=%q\nEPMD_PID=%q\nPORT=%q\nNODENAME=%q\nDIST_PORT=%q\nEPMD_PORT=%q\n' \
            "$BASE" "$SERVER_PID" "$EPMD_PID" "$PORT" "$NODENAME" "$DIST_PORT" "$EPMD_PORT" \
            >"$STATE_FILE"
    }
    write_state
    trap 'say "start failed:"; tail -n 30 "$BASE/log/startup.log" >&2 || true; teardown; exit 1' ERR

    # Start epmd ourselves, on loopback, so that we know its pid and stop it afterwards;
    # an Erlang node would otherwise daemonise one we could not tell from anyone else's.
    if ! epmd -port "$EPMD_PORT" -names >/dev/null 2>&1; then
        "${AS_RABBIT[@]}" epmd -address 127.0.0.1 -port "$EPMD_PORT" </dev/null >/dev/null 2>&1 &
        EPMD_PID=$!
        write_state
        for _ in $(seq 50); do epmd -port "$EPMD_PORT" -names >/dev/null 2>&1 && break; sleep 0.1; done
    else
        say "reusing the epmd already listening on port $EPMD_PORT"
    fi

    # setsid: a Ctrl-C in the calling terminal must not reach the node.
    setsid "${AS_RABBIT[@]}" "$RABBIT_BIN/rabbitmq-server" </dev/null >"$BASE/log/startup.log" 2>&1 &
    SERVER_PID=$!
    write_state
    # await_startup fails at once while the node is not yet registered with epmd, so
    # retry it until the node answers, dies or runs out of time.
    local deadline=$((SECONDS + START_TIMEOUT_SECONDS))
    until ctl await_startup --timeout "$START_TIMEOUT_SECONDS" >/dev/null 2>&1; do
        alive "$SERVER_PID" || { say "rabbitmq-server exited"; false; }
        [ "$SECONDS" -lt "$deadline" ] || { say "not up after ${START_TIMEOUT_SECONDS}s"; false; }
        sleep 0.5
    done
    port_open "$PORT" || { say "node is up but 127.0.0.1:$PORT does not answer"; false; }
    trap - ERR
    say "RabbitMQ $(ctl version 2>/dev/null || echo '?') ($NODENAME) on 127.0.0.1:$PORT, state in $BASE"
    echo "$PORT"
}

cmd_stop() {
    load_state
    if [ -z "$BASE" ]; then
        say "not running"
        return 0
    fi
    teardown
    say "stopped"
}

cmd_status() {
    load_state
    if [ -n "$BASE" ] && running; then
        say "running ($NODENAME, state in $BASE)"
        echo "$PORT"
        return 0
    fi
    say "not running"
    return 3
}

cmd_pid() {
    load_state
    if [ -n "$BASE" ] && [ -s "$BASE/rabbit.pid" ] && alive "$(cat "$BASE/rabbit.pid")"; then
        cat "$BASE/rabbit.pid"
        echo
        return 0
    fi
    say "not running"
    return 3
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
pid) cmd_pid ;;
*) echo "usage: $0 start|stop|status|pid" >&2; exit 2 ;;
esac
