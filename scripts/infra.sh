#!/usr/bin/env bash
# Makes sure the local PostgreSQL and RabbitMQ are up, starting them when they are installed but
# stopped. Fails loudly when one can be neither reached nor started.
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

if ! port_open "$pg_host" "$pg_port"; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "infra: starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  else
    echo "infra: PostgreSQL is not reachable on $pg_host:$pg_port and is not installed here" >&2
    exit 1
  fi
  wait_port "$pg_host" "$pg_port" 60 PostgreSQL
fi
for _ in $(seq 60); do
  pg_isready -q -h "$pg_host" -p "$pg_port" && break
  sleep 1
done
pg_isready -q -h "$pg_host" -p "$pg_port" || { echo "infra: PostgreSQL is not accepting connections" >&2; exit 1; }

if ! port_open 127.0.0.1 "$amqp_port"; then
  if command -v rabbitmq-server >/dev/null; then
    echo "infra: starting RabbitMQ"
    rabbitmq-server -detached
    rabbitmqctl -q await_startup --timeout 120 >/dev/null 2>&1 || true
  else
    echo "infra: RabbitMQ is not reachable on 127.0.0.1:$amqp_port and is not installed here" >&2
    exit 1
  fi
  wait_port 127.0.0.1 "$amqp_port" 120 RabbitMQ
fi

# Tests create a RabbitMQ virtual host each through the management API.
if ! port_open 127.0.0.1 15672; then
  echo "infra: enabling the RabbitMQ management plugin"
  rabbitmq-plugins -q enable rabbitmq_management >/dev/null || true
  for _ in $(seq 30); do port_open 127.0.0.1 15672 && break; sleep 1; done
  if ! port_open 127.0.0.1 15672; then
    # The plugin was enabled offline: it takes effect when the node restarts.
    echo "infra: restarting RabbitMQ to load the management plugin"
    rabbitmqctl -q stop >/dev/null 2>&1 || true
    rabbitmq-server -detached
    rabbitmqctl -q await_startup --timeout 120 >/dev/null 2>&1 || true
  fi
  wait_port 127.0.0.1 15672 120 "RabbitMQ management"
fi
