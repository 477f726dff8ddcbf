#!/usr/bin/env bash
# Instructions the gateway executes per request, counted by valgrind's callgrind: unlike wall
# time, the count repeats for the same binary and inputs however busy the machine is, so it can
# show a hot-path change's effect on a shared 2-core box. All of the gateway's threads count
# (worker, actix system, blocking pool for SQLite), measured over a window after a warm-up.
#
# Usage: bench/instructions.sh [bare|full|floor] [requests]   (default: full 2000)
# floor: the floor proxy (actix-web + hyper's pooled client, nothing else) under the same load,
# so the gateway's own instructions can be told from the framework's.
# BENCH_LIMITS=false runs the full set-up without rate limits (to price a limit decision).
# Needs release binaries (BENCH_SKIP_BUILD=1 to reuse them) and valgrind (installed if missing).
# Writes the callgrind profile to bench/results/callgrind.<mode>.out; inspect it with
# `callgrind_annotate --inclusive=yes bench/results/callgrind.full.out | head -60`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODE=${1:-full}
REQUESTS=${2:-2000}
WARMUP=200
TARGET_DIR=${CARGO_TARGET_DIR:-target}
RESULTS=${BENCH_RESULTS:-bench/results}
mkdir -p "$RESULTS"

log() { echo "[instructions] $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
command -v valgrind >/dev/null || { log "installing valgrind"; as_root apt-get install -y valgrind >/dev/null; }

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    cargo build --release -p gateway -p mock-upstream -p floor-proxy
fi
GATEWAY=$TARGET_DIR/release/gateway
MOCK=$TARGET_DIR/release/mock-upstream
FLOOR=$TARGET_DIR/release/floor-proxy

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gw-instr.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

MOCK_PORT=$(free_port)
"$MOCK" --bind "127.0.0.1:$MOCK_PORT" --name echo --workers 1 >"$TMP/mock.log" 2>&1 &
PIDS+=("$!")
cat >"$TMP/services.json" <<EOF
{"echo": {"host": "127.0.0.1", "port": $MOCK_PORT, "protocol": "http", "health_check": "/health"}}
EOF

export DATABASE_URL="sqlite://$TMP/gw.db"
KEY=""
AUTH=false
METRICS=false
if [ "$MODE" = full ]; then
    KEY=$("$GATEWAY" keys create --name instructions 2>"$TMP/keys.log")
    AUTH=true
    METRICS=true
fi

GW_PORT=$(free_port)
OUT="$RESULTS/callgrind.$MODE.out"
READY=/ready
if [ "$MODE" = floor ]; then
    READY=/health
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT" \
        "$FLOOR" --bind "127.0.0.1:$GW_PORT" --upstream "http://127.0.0.1:$MOCK_PORT" --workers 1 \
        >"$TMP/gateway.log" 2>&1 &
else
GATEWAY_BIND="127.0.0.1:$GW_PORT" METRICS_BIND="127.0.0.1:$(free_port)" SERVICE_DISCOVERY_STATIC_FILE="$TMP/services.json" \
    GATEWAY_WORKERS=1 AUTH_ENABLED=$AUTH PROMETHEUS_ENABLED=$METRICS \
    RATE_LIMIT_ENABLED=${BENCH_LIMITS:-$AUTH} RATE_LIMIT_REQUESTS_PER_MINUTE=1000000000 \
    RATE_LIMIT_BURST=1000000000 CACHE_ENABLED=false \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT" \
    "$GATEWAY" serve >"$TMP/gateway.log" 2>&1 &
fi
GW_PID=$!
PIDS+=("$GW_PID")

# One keep-alive connection, sequential requests: the client's cost is not counted, only the
# gateway's. The window is opened after the warm-up and closed before the process ends.
python3 - "$GW_PORT" "$KEY" "$WARMUP" "$REQUESTS" "$GW_PID" "$READY" <<'EOF'
import http.client, json, subprocess, sys, time
port, key, warmup, requests, pid, ready = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
body = json.dumps({"model": "echo/echo-1", "messages": [{"role": "user", "content": "hello there"}]})
headers = {"Content-Type": "application/json"}
if key:
    headers["Authorization"] = f"Bearer {key}"
deadline = time.time() + 120
while True:
    try:
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        probe.request("GET", ready)
        if probe.getresponse().status == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("the gateway did not become ready under valgrind")
    time.sleep(0.2)
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
def run(n):
    for _ in range(n):
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            sys.exit(f"unexpected status {response.status}")
run(warmup)
subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
run(requests)
subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
EOF
kill -TERM "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
total=$(callgrind_annotate "$OUT" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
per=$((total / REQUESTS))
log "mode=$MODE requests=$REQUESTS instructions=$total per_request=$per"
echo "{\"mode\":\"$MODE\",\"requests\":$REQUESTS,\"instructions\":$total,\"per_request\":$per}"
