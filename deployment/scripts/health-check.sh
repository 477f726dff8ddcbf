#!/usr/bin/env bash
# `make health-check`: asks the gateway and the model server whether they are alive (/health)
# and ready (/ready), and the gateway's metrics listener whether it answers, then says which
# is down. Works against `make run`'s native processes and the compose stacks alike (both
# publish the same ports on this host); point it elsewhere with GATEWAY_URL, MODELS_URL and
# METRICS_URL. Exits non-zero when anything is down.
set -uo pipefail

gateway=${GATEWAY_URL:-http://127.0.0.1:8080}
models=${MODELS_URL:-http://127.0.0.1:5000}
metrics=${METRICS_URL:-http://127.0.0.1:9091}
down=()

probe() { # name url
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$2" 2>/dev/null)
    code=${code:-000}
    if [ "$code" = 200 ]; then
        printf '  %-28s %-40s up\n' "$1" "$2"
    else
        local why="HTTP $code"
        [ "$code" = 000 ] && why="no answer"
        printf '  %-28s %-40s DOWN (%s)\n' "$1" "$2" "$why"
        down+=("$1")
    fi
}

command -v curl >/dev/null || { echo "health-check: curl is required" >&2; exit 1; }
echo "health-check:"
probe "gateway alive" "$gateway/health"
probe "gateway ready" "$gateway/ready"
probe "gateway metrics" "$metrics/metrics"
probe "model server alive" "$models/health"
probe "model server ready" "$models/ready"
if [ ${#down[@]} -gt 0 ]; then
    echo "down: ${down[*]}" >&2
    echo "  (not started? \`make run\` or \`make dev-up\`; a gateway that is alive but not ready has no healthy upstream: \`curl $gateway/ready\` says which service)" >&2
    exit 1
fi
echo "all up"
