#!/usr/bin/env bash
# `make compose-test`: the DEVELOPMENT stack (docker-compose.yml) up for real under podman, driven
# by docker-compose 1.29 through podman's Docker-compatible socket, then checked through nginx.
# Steps (each printed with the seconds since start):
#   1. tools (install-container-tools.sh), podman works (else: CI=true fails, elsewhere skips)
#   2. the gateway binary built on the host (debug; or GATEWAY_BINARY), for the prebuilt stage
#      (no Rust toolchain image can be made here)
#   3. local base images (base-images.sh: debootstrap once, cached in podman's storage)
#   4. podman system service on a private socket; docker-compose build, then up -d
#   5. every container healthy (podman has no systemd here to schedule healthchecks, so this
#      script runs each container's own check, `podman healthcheck run`, every 2 s)
#   6. admin user via the gateway CLI in the backend container, then checks.py through nginx:
#      dashboard, login, key via the admin API, REST chat against python-models, SSE, WebSocket,
#      GraphQL, Prometheus scraping the gateway's :9091; usage rows in the PostgreSQL container
#   7. docker-compose down -v, and nothing of the project left (also on failure: trap)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
HERE=deployment/compose-test
PROJECT=aigw-compose-test
START=$(date +%s)
step() { printf '\n== compose-test [%4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }
die() { printf '\ncompose-test: FAILED: %s\n' "$*" >&2; exit 1; }

step "1/7 tools"
TOOLS_BIN="$(deployment/scripts/install-container-tools.sh | tail -n1)"
export CONTAINERS_CONF="$ROOT/$HERE/containers.conf"
if ! podman info >/dev/null 2>&1; then
    if [ "${CI:-}" = "true" ]; then die "podman cannot run here: $(podman info 2>&1 | tail -n3)"; fi
    echo "compose-test: SKIPPED: podman cannot run on this machine (under CI=true this fails)" >&2
    exit 0
fi
# Leftovers of an interrupted run of this test are removed; a real development stack (the
# same container names, another compose project) is left alone and stops the test.
leftover="$(podman ps -a -q --filter "label=com.docker.compose.project=$PROJECT")"
if [ -n "$leftover" ]; then
    echo "   removing the containers, volumes and network an interrupted run left"
    podman rm -f -t 5 $leftover >/dev/null
    podman volume rm $(podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT") >/dev/null 2>&1 || true
    podman network rm "${PROJECT}_default" >/dev/null 2>&1 || true
fi
for name in $(podman ps -a --format '{{.Names}}'); do
    case "$name" in aigateway-*-dev) die "a development stack is running ($name): make dev-down first";; esac
done

step "2/7 gateway binary (host build, debug) for the production-prebuilt stage"
# GATEWAY_BINARY=path tests a binary built elsewhere (a release build, another checkout).
binary="${GATEWAY_BINARY:-}"
if [ -z "$binary" ]; then
    cargo build -q -p gateway
    binary="${CARGO_TARGET_DIR:-target}/debug/gateway"
fi
mkdir -p .prebuilt
# Debug info is most of a debug binary; the image needs only the code.
objcopy --strip-debug "$binary" .prebuilt/gateway
ls -lh .prebuilt/gateway | awk '{print "   " $5 " " $9}'

step "3/7 local base images (debootstrap once; cached)"
set -a
# shellcheck disable=SC1090 # NAME=value lines from the script
. <(bash "$HERE/base-images.sh")
set +a

RUN_DIR="$(mktemp -d /tmp/aigw-compose-test.XXXXXX)"
SERVICE_PID="" TICKER_PID=""
dc() { docker-compose -p "$PROJECT" -f docker-compose.yml -f "$HERE/docker-compose.test.yml" "$@"; }
cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ $status -ne 0 ] && [ -n "$SERVICE_PID" ]; then
        printf '\n== compose-test: failed; the last log lines of every service:\n'
        dc logs --no-color --tail 40 2>&1 | tail -n 300 || true
        for c in $(podman ps -a -q --filter "label=com.docker.compose.project=$PROJECT"); do
            podman inspect --format '   {{.Name}}: {{.State.Status}} health={{.State.Health.Status}}' "$c" || true
        done
    fi
    step "7/7 down -v"
    [ -n "$TICKER_PID" ] && kill "$TICKER_PID" 2>/dev/null
    if [ -n "$SERVICE_PID" ]; then
        dc down -v --remove-orphans --timeout 10 2>&1 | sed 's/^/   /' || true
        kill "$SERVICE_PID" 2>/dev/null; wait "$SERVICE_PID" 2>/dev/null || true
    fi
    left="$(podman ps -a -q --filter "label=com.docker.compose.project=$PROJECT")$(podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT")$(podman network ls -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null)"
    if [ -n "$left" ]; then
        echo "compose-test: left behind: $left" >&2
        [ $status -eq 0 ] && status=1
    else
        echo "   nothing left: no containers, volumes or networks of $PROJECT"
    fi
    rm -rf "$RUN_DIR" .prebuilt
    printf '\n== compose-test: %s in %ss\n' "$([ $status -eq 0 ] && echo PASSED || echo FAILED)" "$(( $(date +%s) - START ))"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "4/7 podman system service on $RUN_DIR/podman.sock; docker-compose build + up"
podman system service --time=0 "unix://$RUN_DIR/podman.sock" >"$RUN_DIR/podman.log" 2>&1 &
SERVICE_PID=$!
export DOCKER_HOST="unix://$RUN_DIR/podman.sock"
deadline=$(( $(date +%s) + 30 ))
until curl -fsS --unix-socket "$RUN_DIR/podman.sock" http://d/_ping >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "podman's socket did not answer: $(cat "$RUN_DIR/podman.log")"
    sleep 0.2
done
# Free ports on 127.0.0.1 for every published port (the machine's own services keep theirs).
read -r HTTP_PORT BACKEND_PORT METRICS_PORT FRONTEND_PORT MODELS_PORT CONSUL_PORT PROMETHEUS_PORT GRAFANA_PORT < <(
    python3 -c 'import socket
s=[socket.socket() for _ in range(8)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
export HTTP_PORT BACKEND_PORT METRICS_PORT FRONTEND_PORT MODELS_PORT CONSUL_PORT PROMETHEUS_PORT GRAFANA_PORT
export HOST_IP=127.0.0.1 GATEWAY_BUILD_TARGET=production-prebuilt PREBUILT_BINARY=.prebuilt/gateway
dc config -q
# The full build log goes to a file; its step lines are printed, and a failure shows the end.
if ! dc build >"$RUN_DIR/build.log" 2>&1; then
    tail -n 60 "$RUN_DIR/build.log"
    die "docker-compose build"
fi
grep -E '^(Building|Successfully tagged|.*STEP [0-9]+/[0-9]+: (FROM|RUN))' "$RUN_DIR/build.log" | cut -c1-150 | sed 's/^/   /'
# Healthchecks: podman schedules them with systemd timers, and there is no systemd here.
( while :; do
      for c in $(podman ps -q --filter "label=com.docker.compose.project=$PROJECT"); do
          podman healthcheck run "$c" >/dev/null 2>&1 || true
      done
      sleep 2
  done ) &
TICKER_PID=$!
dc up -d 2>&1 | sed 's/^/   /'

step "5/7 every container healthy"
deadline=$(( $(date +%s) + 300 ))
while :; do
    states="$(for c in $(podman ps -a -q --filter "label=com.docker.compose.project=$PROJECT"); do
        podman inspect --format '{{.Name}}={{.State.Health.Status}}' "$c"; done | sort)"
    [ "$(grep -c . <<<"$states")" -eq 9 ] && ! grep -qv '=healthy$' <<<"$states" && break
    [ "$(date +%s)" -lt "$deadline" ] || die "not all 9 containers healthy after 300 s: $(echo $states)"
    sleep 1
done
echo "$states" | sed 's/^/   /'

step "6/7 checks through nginx (http://127.0.0.1:$HTTP_PORT)"
PASSWORD="compose-test-$(date +%s%N | sha256sum | cut -c1-16)"
# podman's DNS server (aardvark-dns 1.4 here) was seen to stall for tens of seconds while
# containers join the network: a lookup then times out and the CLI cannot reach PostgreSQL
# (the gateway itself connected before). Such a failure leaves nothing behind, so the CLI is
# retried until a deadline, each failure printed with what the name resolves to right then.
deadline=$(( $(date +%s) + 150 ))
until out="$(echo "$PASSWORD" | timeout 60 docker-compose -p "$PROJECT" -f docker-compose.yml -f "$HERE/docker-compose.test.yml" \
        exec -T backend gateway users create --username admin --role admin 2>&1)"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "gateway users create in the backend container: $out"
    echo "   (retrying the CLI: $out; postgres resolves to: $(timeout 10 podman exec aigateway-backend-dev getent hosts postgres 2>&1 || echo nothing))"
    sleep 1
done
echo "   - $out, with the gateway CLI in aigateway-backend-dev"
out="$("$TOOLS_BIN/python" "$HERE/checks.py" "http://127.0.0.1:$HTTP_PORT" "http://127.0.0.1:$PROMETHEUS_PORT" "$PASSWORD")" \
    || { echo "$out"; die "checks.py"; }
grep -v '^KEY_ID=' <<<"$out"
key_id="$(sed -n 's/^KEY_ID=//p' <<<"$out")"
# The usage recorder writes in batches: poll the PostgreSQL container until the rows are there.
deadline=$(( $(date +%s) + 30 ))
while :; do
    rows="$(dc exec -T postgres psql -U gateway -d gateway -tAc \
        "SELECT count(*) || ' rows, ' || coalesce(sum(prompt_tokens + completion_tokens), 0) || ' tokens, models ' || string_agg(DISTINCT model, ',') FROM usage_events WHERE key_id = $key_id")"
    [ "${rows%% *}" -ge 3 ] && break
    [ "$(date +%s)" -lt "$deadline" ] || die "usage_events for key $key_id in PostgreSQL: $rows (want >= 3: REST, SSE, WebSocket)"
    sleep 1
done
echo "   - usage in aigateway-postgres-dev for key $key_id: $rows"
