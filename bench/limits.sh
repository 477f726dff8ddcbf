#!/usr/bin/env bash
# The price of a rate-limit decision in throughput: the full gateway (key auth, usage, metrics)
# with limits off, in-process and through Redis (REDIS_URL, default this machine's), two
# interleaved rounds of wrk at c=16 against one mock. Needs release binaries
# (`make release`), wrk and a Redis. Figures compare only within one run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
B=${CARGO_TARGET_DIR:-target}/release
REDIS=${REDIS_URL:-redis://127.0.0.1:6379}
T=$(mktemp -d)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MP=$(free_port)
$B/mock-upstream --bind 127.0.0.1:$MP --name echo --workers 1 > $T/mock.log 2>&1 &
MOCK=$!
echo "{\"echo\": {\"host\": \"127.0.0.1\", \"port\": $MP, \"protocol\": \"http\", \"health_check\": \"/health\"}}" > $T/services.json
export DATABASE_URL="sqlite://$T/gw.db"
KEY=$($B/gateway keys create --name lb 2>/dev/null)
cat > $T/req.lua <<LUA
wrk.method = "POST"
wrk.body = '{"model":"echo/echo-1","messages":[{"role":"user","content":"hello there"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
run() { # label env...
  local label=$1; shift
  local GP=$(free_port)
  env GATEWAY_BIND=127.0.0.1:$GP METRICS_BIND=127.0.0.1:$(free_port) SERVICE_DISCOVERY_STATIC_FILE=$T/services.json GATEWAY_WORKERS=1 \
    AUTH_ENABLED=true PROMETHEUS_ENABLED=true CACHE_ENABLED=false RATE_LIMIT_REQUESTS_PER_MINUTE=1000000000 RATE_LIMIT_BURST=1000000000 "$@" \
    $B/gateway serve > $T/gw-$label.log 2>&1 &
  local GW=$!
  for i in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:$GP/ready && break; sleep 0.1; done
  wrk -t1 -c16 -d6s -s $T/req.lua http://127.0.0.1:$GP/v1/chat/completions | awk -v l=$label '/Requests\/sec/ {print l, $2} /Non-2xx/ {print l, "non-2xx:", $NF}'
  kill $GW; wait $GW 2>/dev/null || true
}
for round in 1 2; do
  run off RATE_LIMIT_ENABLED=false
  run local RATE_LIMIT_ENABLED=true
  run redis RATE_LIMIT_ENABLED=true REDIS_ENABLED=true REDIS_URL=$REDIS REDIS_KEY_PREFIX=lbench-$$-$round REDIS_TIMEOUT_MS=200
done
kill $MOCK; rm -rf "$T"
