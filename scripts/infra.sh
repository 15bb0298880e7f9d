#!/usr/bin/env bash
# Makes sure the local PostgreSQL and RabbitMQ are up: starts them when they are installed but
# stopped, and installs them with apt-get (sudo when not root) on Debian or Ubuntu when they are
# missing. Elsewhere, or without the rights to install, it says exactly what to install. Fails
# loudly when one can be neither reached nor started.
set -euo pipefail

pg_host=${PGHOST:-127.0.0.1}
pg_port=${PGPORT:-5432}
amqp_port=${AMQP_PORT:-5672}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() { # host port seconds name
  for _ in $(seq "$3"); do
    port_open "$1" "$2" && return 0
    sleep 1
  done
  echo "infra: $4 did not come up on $1:$2" >&2
  exit 1
}

# what_to_install says what the reader must install by hand, and stops.
what_to_install() { # reason
  cat >&2 <<MSG
infra: $1
infra: install by hand, then run make run again:
  PostgreSQL 13 or later, listening on localhost:5432, user postgres allowed without password
    (pg_hba.conf: "host all postgres 127.0.0.1/32 trust" and "host all postgres ::1/128 trust")
  RabbitMQ 3.13 or later, listening on localhost:5672 with the default guest/guest user
  e.g. Debian/Ubuntu: apt-get install postgresql rabbitmq-server; macOS: brew install postgresql rabbitmq
MSG
  exit 1
}

sudo=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then
  sudo=(sudo)
fi
# apt_install installs Debian packages, or says what to install by hand.
apt_install() { # package...
  "$(dirname "$0")/apt-install.sh" infra "$@" || what_to_install "could not install $* here"
}

# trust_local_postgres lets user postgres connect over TCP from this machine without a password,
# as the services' default URLs do; only done on a cluster this script installed.
trust_local_postgres() { # version
  # The first matching line of pg_hba.conf wins: these go first.
  "${sudo[@]}" sed -i \
    -e '1i # make run (ordersaga): the services connect as postgres without a password' \
    -e '1i host all postgres 127.0.0.1/32 trust' \
    -e '1i host all postgres ::1/128 trust' \
    "/etc/postgresql/$1/main/pg_hba.conf"
}

if ! port_open "$pg_host" "$pg_port"; then
  installed=false
  if ! { command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql)" ]; }; then
    apt_install postgresql
    installed=true
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if $installed; then
    trust_local_postgres "$version"
  fi
  if ! port_open "$pg_host" "$pg_port"; then
    echo "infra: starting PostgreSQL $version"
    "${sudo[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
      "${sudo[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main restart
  elif $installed; then
    "${sudo[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main reload # the trust rules
  fi
  wait_port "$pg_host" "$pg_port" 60 PostgreSQL
fi
if command -v pg_isready >/dev/null; then
  for _ in $(seq 60); do
    pg_isready -q -h "$pg_host" -p "$pg_port" && break
    sleep 1
  done
  pg_isready -q -h "$pg_host" -p "$pg_port" || { echo "infra: PostgreSQL is not accepting connections" >&2; exit 1; }
fi

if ! port_open 127.0.0.1 "$amqp_port"; then
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  if ! port_open 127.0.0.1 "$amqp_port"; then # the package may have started it
    echo "infra: starting RabbitMQ"
    "${sudo[@]}" rabbitmq-server -detached
    "${sudo[@]}" rabbitmqctl -q await_startup --timeout 120 >/dev/null 2>&1 || true
  fi
  wait_port 127.0.0.1 "$amqp_port" 120 RabbitMQ
fi

# Tests create a RabbitMQ virtual host each through the management API.
if ! port_open 127.0.0.1 15672; then
  echo "infra: enabling the RabbitMQ management plugin"
  "${sudo[@]}" rabbitmq-plugins -q enable rabbitmq_management >/dev/null || true
  for _ in $(seq 30); do port_open 127.0.0.1 15672 && break; sleep 1; done
  if ! port_open 127.0.0.1 15672; then
    # The plugin was enabled offline: it takes effect when the node restarts.
    echo "infra: restarting RabbitMQ to load the management plugin"
    "${sudo[@]}" rabbitmqctl -q stop >/dev/null 2>&1 || true
    "${sudo[@]}" rabbitmq-server -detached
    "${sudo[@]}" rabbitmqctl -q await_startup --timeout 120 >/dev/null 2>&1 || true
  fi
  wait_port 127.0.0.1 15672 120 "RabbitMQ management"
fi
