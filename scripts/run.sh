#!/usr/bin/env bash
# Runs the four services from bin/ against the local PostgreSQL and RabbitMQ, logging to the
# terminal, until Ctrl-C; then stops them all gracefully. Once all four are ready it says what
# listens where and the first command to try. On a terminal the services log text, one line
# each, service first (LOG_FORMAT=auto); LOG_FORMAT=json gives what a collector reads.
set -euo pipefail
cd "$(dirname "$0")/.."

pids=()
announcer=
stop() {
  trap - INT TERM
  [ -n "$announcer" ] && kill "$announcer" 2>/dev/null
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

# port ADDR prints the port of a listen address such as ":3001" or "0.0.0.0:3001".
port() { echo "${1##*:}"; }
grpc=$(port "${ORDER_GRPC_ADDR:-:50051}")
rest=$(port "${ORDER_HTTP_ADDR:-:3001}")
admin=$(port "${INVENTORY_GRPC_ADDR:-:50052}")
ops=("$(port "${ORDER_OPS_ADDR:-:9101}")" "$(port "${PAYMENT_OPS_ADDR:-:9102}")"
  "$(port "${INVENTORY_OPS_ADDR:-:9103}")" "$(port "${SHIPPING_OPS_ADDR:-:9104}")")

ready() { # every service answers /readyz with 200
  for p in "${ops[@]}"; do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$p/readyz" 2>/dev/null || return 1
  done
}
announce() {
  for _ in $(seq 120); do
    ready && break
    sleep 0.5
  done
  if ! ready; then
    echo "ordersaga: not every service is ready after 60s; see the lines above (curl http://127.0.0.1:9101/readyz)" >&2
    return
  fi
  scheme=http
  [ -n "${TLS_CERT_FILE:-}" ] && scheme=https
  cat >&2 <<MSG

ordersaga is ready:
  order      gRPC      localhost:$grpc  (reflection: bin/grpcurl -plaintext localhost:$grpc list)
             REST      $scheme://localhost:$rest/v1/orders  (OpenAPI: $scheme://localhost:$rest/openapi3.json)
  inventory  admin     localhost:$admin
  ops        /healthz /readyz /metrics on :${ops[0]} (order) :${ops[1]} (payment) :${ops[2]} (inventory) :${ops[3]} (shipping)
Try, in another terminal (README: "A first order" for more):
  curl -s -X POST $scheme://localhost:$rest/v1/orders -H 'Content-Type: application/json' -d '{"customer_id": "123e4567-e89b-12d3-a456-426614174000", "payment_method": "credit_card", "items": [{"product_id": "00000000-0000-0000-0000-000000000001", "quantity": 2, "unit_price": "49.90"}]}'
Ctrl-C stops all four.

MSG
}
if command -v curl >/dev/null; then
  announce &
  announcer=$!
else
  echo "ordersaga is starting: order gRPC :$grpc, REST :$rest, inventory admin :$admin, ops :${ops[0]}-:${ops[3]}. Ctrl-C stops all four." >&2
fi

# Stop everything as soon as one service exits on its own.
wait -n "${pids[@]}" || true
echo "a service exited; stopping the others" >&2
stop
