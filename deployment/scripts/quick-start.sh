#!/usr/bin/env bash
# `make quick-start`: the development stack from nothing to a working login, on a machine with
# Docker. Checks Docker, builds the images, brings the stack up, waits for the gateway (its
# first start compiles it inside the container: minutes), creates an admin user and an API key,
# and prints where everything is. Safe to run again: an existing admin user is kept.
# Env: ADMIN_USER (default admin), ADMIN_PASSWORD (default: generated and printed),
#      CN_MIRRORS=1 (build through the mainland-China mirrors, docker/mirrors-cn.env).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
compose=(deployment/scripts/compose.sh -f docker-compose.yml)

"${compose[@]}" version >/dev/null   # stops here, with what to do, without Docker
if [ "${CN_MIRRORS:-0}" = 1 ]; then
    set -a
    . docker/mirrors-cn.env
    set +a
fi
echo "== building images"
"${compose[@]}" build
echo "== starting the development stack"
"${compose[@]}" up -d
echo "== waiting for the gateway (the first start compiles it: allow several minutes)"
deadline=$((SECONDS + ${QUICK_START_TIMEOUT:-1200}))
until curl -fsS -o /dev/null --max-time 3 http://127.0.0.1:8080/health; do
    if [ $SECONDS -ge $deadline ]; then
        echo "the gateway did not answer in time; its log:" >&2
        "${compose[@]}" logs --tail=50 backend >&2
        exit 1
    fi
    sleep 5
done

# The CLI inside the backend container: the image's binary, or the development build.
gateway_cli() {
    "${compose[@]}" exec -T backend sh -c \
        'if command -v gateway >/dev/null; then exec gateway "$@"; else exec /cargo-target/debug/gateway "$@"; fi' \
        gateway "$@"
}
user=${ADMIN_USER:-admin}
password=${ADMIN_PASSWORD:-$(openssl rand -base64 18)}
echo "== admin user '$user'"
if printf '%s\n' "$password" | gateway_cli users create --username "$user" --role admin; then
    created_password=$password
else
    echo "   (kept the existing user '$user'; its password is unchanged)"
    created_password="(unchanged)"
fi
echo "== API key"
key=$(gateway_cli keys create --name "quick-start-$(date +%Y%m%d-%H%M%S)")

cat <<INFO

The stack is up.
  Front door (dashboard, API)   http://localhost/
  Gateway API                   http://localhost:8080   (metrics: http://localhost:9091/metrics)
  Dashboard (direct)            http://localhost:3000
  Grafana                       http://localhost:3001   (admin / ${GRAFANA_ADMIN_PASSWORD:-admin})
  Prometheus                    http://localhost:9090
  Consul                        http://localhost:8500
  Model server                  http://localhost:5000

  Admin login     $user / $created_password
  API key         $key

Try:  curl http://localhost/v1/chat/completions -H "Authorization: Bearer $key" \\
        -H 'Content-Type: application/json' \\
        -d '{"model":"python-models/smollm2-135m-instruct","messages":[{"role":"user","content":"Hi"}]}'
Then: make health-check, make dev-logs, make dev-down.
INFO
