#!/usr/bin/env bash
# Runs the four services from bin/ against the local PostgreSQL and RabbitMQ, logging to the
# terminal, until Ctrl-C; then stops them all gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."

pids=()
stop() {
  trap - INT TERM
  echo "stopping services..." >&2
  kill -TERM "${pids[@]}" 2>/dev/null || true
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
  exit $status
}
trap stop INT TERM

for svc in order payment inventory shipping; do
  "bin/$svc" &
  pids+=($!)
done

cat >&2 <<MSG
ordersaga is starting: order gRPC :50051, REST :3001, inventory admin gRPC :50052,
ops ports :9101-:9104 (/healthz /readyz /metrics). Press Ctrl-C to stop.
MSG

# Stop everything as soon as one service exits on its own.
wait -n "${pids[@]}" || true
echo "a service exited; stopping the others" >&2
stop
