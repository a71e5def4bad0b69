#!/usr/bin/env bash
# Starts the local RabbitMQ node if it is down (idempotent) and waits for its AMQP port.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

if (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  echo "RabbitMQ is up on 127.0.0.1:5672"
  exit 0
fi
if ! command -v rabbitmq-server >/dev/null; then
  echo "RabbitMQ is not installed: apt-get install -y rabbitmq-server" >&2
  exit 1
fi
# The node may be running with its app stopped (e.g. after an interrupted test).
if rabbitmqctl -q status >/dev/null 2>&1; then
  rabbitmqctl -q start_app || true
else
  rabbitmq-server -detached
fi
wait_for_port 127.0.0.1 5672 60 RabbitMQ
