#!/usr/bin/env bash
# The overhead benchmark behind `make benchmark`: the same requests straight at the mock upstream
# (direct), through nginx (a plain keep-alive reverse proxy), through the floor proxy (actix-web
# + hyper's pooled client and nothing else: the framework's own cost) and through the gateway
# (bare: no auth, no metrics; full: API key, usage recording, metrics), all in one run on one
# machine.
# Raw figures go to a temp dir; bench/report.py turns them into bench/results/latest.{md,json}.
# Every process started here is stopped on exit, including on failure or Ctrl-C.
#
# Knobs (environment): BENCH_DURATION (s per wrk run, 5), BENCH_ROUNDS (3),
# BENCH_CONCURRENCY ("1 16 64"), BENCH_STREAM_REQUESTS (500), BENCH_OPEN_STREAMS (1000),
# BENCH_GATEWAY_WORKERS (1, the floor proxy's too), BENCH_NGINX_WORKERS (the gateway's count),
# BENCH_MOCK_WORKERS (2), BENCH_SKIP_BUILD=1, BENCH_KEEP_TMP=1 (keep logs and raw files).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"   # the gateway finds config/ relative to the working directory

TARGET_DIR=${CARGO_TARGET_DIR:-target}
DURATION=${BENCH_DURATION:-5}
# Every non-streaming run is repeated in interleaved rounds; the report keeps each target's
# median round, so one burst of background load on a shared machine does not decide a line.
ROUNDS=${BENCH_ROUNDS:-3}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 16 64"}
STREAM_REQUESTS=${BENCH_STREAM_REQUESTS:-500}
OPEN_STREAMS=${BENCH_OPEN_STREAMS:-1000}
# One gateway worker and one nginx worker: on a 2-core machine that also runs wrk and the mock,
# one worker each puts both proxies on equal footing and leaves a core for the load generator.
GATEWAY_WORKERS=${BENCH_GATEWAY_WORKERS:-1}
NGINX_WORKERS=${BENCH_NGINX_WORKERS:-$GATEWAY_WORKERS}
MOCK_WORKERS=${BENCH_MOCK_WORKERS:-2}
RESULTS=${BENCH_RESULTS:-bench/results}
BODY='{"model":"echo/echo-1","messages":[{"role":"user","content":"hello there"}]}'

log() { echo "[bench] $*" >&2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gw-bench.XXXXXX")
RAW=$TMP/raw
mkdir -p "$RAW"
PIDS=()

# Stops one process: TERM, up to 5 s of grace, then KILL.
stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ -n "${BENCH_KEEP_TMP:-}" ] || [ "$status" -ne 0 ]; then
        log "logs and raw figures kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until a URL answers 200, or fails after $2 seconds.
wait_http() {
    local url=$1 limit=$2
    for _ in $(seq $((limit * 10))); do
        if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "timed out waiting for $url"
    return 1
}

# utime + stime in clock ticks, summed over the given pids.
cpu_ticks() {
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}

status_kb() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------------------------------------
# Tools and binaries.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
need() {
    local command=$1 package=$2
    if command -v "$command" >/dev/null 2>&1 || [ -x "/usr/sbin/$command" ]; then return 0; fi
    log "installing $package"
    as_root apt-get install -y "$package" >/dev/null ||
        { as_root apt-get update >/dev/null && as_root apt-get install -y "$package" >/dev/null; }
}
need wrk wrk
need nginx nginx
need curl curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    log "building release binaries"
    cargo build --release -p gateway -p mock-upstream -p floor-proxy
fi
GATEWAY=$TARGET_DIR/release/gateway
MOCK=$TARGET_DIR/release/mock-upstream
FLOOR=$TARGET_DIR/release/floor-proxy

# The client side holds ~1,000 sockets, the gateway twice that (client + upstream).
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((OPEN_STREAMS * 2 + 256)) ]; then
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    log "open-file limit is $(ulimit -n)"
fi

# ---------------------------------------------------------------------------------------------
# Upstreams: a fast mock (20 chunks, no delay) and a slow one for open streams (20 × 200 ms).
MOCK_PORT=$(free_port)
"$MOCK" --bind "127.0.0.1:$MOCK_PORT" --name echo --chunks 20 --workers "$MOCK_WORKERS" \
    >"$TMP/mock.log" 2>&1 &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
SLOW_PORT=$(free_port)
"$MOCK" --bind "127.0.0.1:$SLOW_PORT" --name slow --chunks 20 --chunk-delay-ms 200 \
    --workers "$MOCK_WORKERS" >"$TMP/mock-slow.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$MOCK_PORT/health" 20
wait_http "http://127.0.0.1:$SLOW_PORT/health" 20

cat >"$TMP/services.json" <<EOF
{
  "echo": {"host": "127.0.0.1", "port": $MOCK_PORT, "protocol": "http", "health_check": "/health"},
  "slow": {"host": "127.0.0.1", "port": $SLOW_PORT, "protocol": "http", "health_check": "/health"}
}
EOF

# ---------------------------------------------------------------------------------------------
# nginx: foreground, own prefix, pid and logs in the temp dir.
NGINX_PORT=$(free_port)
mkdir -p "$TMP/nginx"
user_line=""
[ "$(id -u)" -eq 0 ] && user_line="user root;"
cat >"$TMP/nginx/nginx.conf" <<EOF
$user_line
daemon off;
worker_processes $NGINX_WORKERS;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    upstream mock {
        server 127.0.0.1:$MOCK_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
"$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_http "http://127.0.0.1:$NGINX_PORT/health" 20

# The floor proxy: the gateway's server, client and allocator, with one worker like the others.
FLOOR_PORT=$(free_port)
"$FLOOR" --bind "127.0.0.1:$FLOOR_PORT" --upstream "http://127.0.0.1:$MOCK_PORT" \
    --workers "$GATEWAY_WORKERS" >"$TMP/floor.log" 2>&1 &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")
wait_http "http://127.0.0.1:$FLOOR_PORT/health" 20

# ---------------------------------------------------------------------------------------------
# Gateways: bare and full share the temp SQLite database (only full reads keys from it).
export DATABASE_URL="sqlite://$TMP/gw.db"
KEY=$("$GATEWAY" keys create --name bench 2>"$TMP/keys.log")

start_gateway() { # label auth+limits prometheus -> sets GW_PORT, GW_METRICS_PORT, GW_PID
    # Full runs every policy: API keys, rate limits (in-process, ceilings far above the load so
    # every decision is made and none refuses), usage recording and metrics.
    GW_PORT=$(free_port)
    GW_METRICS_PORT=$(free_port)
    GATEWAY_BIND="127.0.0.1:$GW_PORT" METRICS_BIND="127.0.0.1:$GW_METRICS_PORT" \
        SERVICE_DISCOVERY_STATIC_FILE="$TMP/services.json" \
        GATEWAY_WORKERS="$GATEWAY_WORKERS" AUTH_ENABLED="$2" \
        RATE_LIMIT_ENABLED="$2" RATE_LIMIT_REQUESTS_PER_MINUTE=1000000000 \
        RATE_LIMIT_BURST=1000000000 CACHE_ENABLED=false \
        PROMETHEUS_ENABLED="$3" "$GATEWAY" serve >"$TMP/gateway-$1.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    wait_http "http://127.0.0.1:$GW_PORT/ready" 30
}

start_gateway bare false false
BARE_PORT=$GW_PORT BARE_PID=$GW_PID
start_gateway full true true
FULL_PORT=$GW_PORT FULL_METRICS_PORT=$GW_METRICS_PORT FULL_PID=$GW_PID

# ---------------------------------------------------------------------------------------------
# Non-streaming: wrk with a Lua script that sets the request and prints its figures as JSON.
write_lua() { # file key
    cat >"$1" <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
EOF
    [ -n "$2" ] && echo "wrk.headers[\"Authorization\"] = \"Bearer $2\"" >>"$1"
    cat >>"$1" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%.0f,"duration_us":%.0f,"errors":{"connect":%.0f,"read":%.0f,' ..
    '"write":%.0f,"status":%.0f,"timeout":%.0f},"latency_us":{"mean":%.1f,"max":%.0f,' ..
    '"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
EOF
}
write_lua "$TMP/plain.lua" ""
write_lua "$TMP/auth.lua" "$KEY"

# Targets: name port lua-script pids-whose-CPU-counts
nginx_workers() { pgrep -P "$NGINX_PID" | tr '\n' ' '; }
TARGETS=(
    "direct $MOCK_PORT plain $MOCK_PID"
    "nginx $NGINX_PORT plain NGINX"
    "floor $FLOOR_PORT plain $FLOOR_PID"
    "gateway-bare $BARE_PORT plain $BARE_PID"
    "gateway-full $FULL_PORT auth $FULL_PID"
)

scrape() { curl -fsS "http://127.0.0.1:$FULL_METRICS_PORT/metrics" >"$1"; }

target_fields() { # entry -> name port script pids url
    read -r name port script pids <<<"$1"
    [ "$pids" = NGINX ] && pids=$(nginx_workers)
    url="http://127.0.0.1:$port/v1/chat/completions"
}

for entry in "${TARGETS[@]}"; do
    target_fields "$entry"
    log "$name: warm-up"
    wrk -t1 -c16 -d2s -s "$TMP/$script.lua" "$url" >/dev/null
done
# Targets take turns at each concurrency, round after round: the runs a budget line compares
# happen within a minute of each other instead of minutes apart, so a shared machine drifts
# less between them.
for round in $(seq "$ROUNDS"); do
    for c in $CONCURRENCY; do
        for entry in "${TARGETS[@]}"; do
            target_fields "$entry"
            log "$name: c=$c for ${DURATION}s (round $round of $ROUNDS)"
            run=$name-c$c-r$round
            [ "$name" = gateway-full ] && scrape "$RAW/metrics-$run-before.txt"
            before=$(cpu_ticks $pids)
            wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$TMP/$script.lua" "$url" \
                >"$RAW/wrk-$run.txt"
            after=$(cpu_ticks $pids)
            [ "$name" = gateway-full ] && scrape "$RAW/metrics-$run-after.txt"
            printf '{"cpu_ticks": %d, "clk_tck": %d}\n' $((after - before)) \
                "$(getconf CLK_TCK)" >"$RAW/cpu-$run.json"
        done
    done
done
for entry in "${TARGETS[@]}"; do
    target_fields "$entry"
    log "$name: $STREAM_REQUESTS sequential streams (20 chunks)"
    key=""
    [ "$script" = auth ] && key=$KEY
    python3 bench/sse_client.py sequential --port "$port" --key "$key" \
        --requests "$STREAM_REQUESTS" >"$RAW/stream-$name.json"
done

printf '{"gateway-bare": %d, "gateway-full": %d}\n' "$(status_kb "$BARE_PID" VmHWM)" \
    "$(status_kb "$FULL_PID" VmHWM)" >"$RAW/peak-rss-kb.json"
for pid in "$NGINX_PID" "$FLOOR_PID" "$BARE_PID" "$FULL_PID"; do stop_pid "$pid"; done

# ---------------------------------------------------------------------------------------------
# Open streams: a fresh full gateway (so its peak RSS is this scenario's alone) holds
# $OPEN_STREAMS streams of 20 chunks × 200 ms at once.
start_gateway streams true true
python3 bench/sse_client.py sequential --port "$GW_PORT" --key "$KEY" --requests 5 --warmup 0 \
    >/dev/null
idle_rss=$(status_kb "$GW_PID" VmRSS)
before=$(cpu_ticks "$GW_PID")
log "gateway-full: $OPEN_STREAMS concurrent streams (20 chunks x 200 ms)"
python3 bench/sse_client.py concurrent --port "$GW_PORT" --key "$KEY" --model slow/echo-1 \
    --requests "$OPEN_STREAMS" >"$RAW/open-streams-client.json"
after=$(cpu_ticks "$GW_PID")
printf '{"idle_rss_kb": %d, "peak_rss_kb": %d, "cpu_ticks": %d, "clk_tck": %d, "streams": %d}\n' \
    "$idle_rss" "$(status_kb "$GW_PID" VmHWM)" $((after - before)) "$(getconf CLK_TCK)" \
    "$OPEN_STREAMS" >"$RAW/open-streams-gateway.json"
stop_pid "$GW_PID"

# ---------------------------------------------------------------------------------------------
cat >"$RAW/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "host": "$(uname -srm)", "cores": $(nproc),
 "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
 "wrk": "$(wrk -v 2>&1 | head -1 | awk '{print $2}')", "nginx": "$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')",
 "duration_s": $DURATION, "rounds": $ROUNDS, "concurrency": [$(echo "$CONCURRENCY" | tr ' ' ',')],
 "gateway_workers": $GATEWAY_WORKERS, "nginx_workers": $NGINX_WORKERS, "mock_workers": $MOCK_WORKERS,
 "stream_requests": $STREAM_REQUESTS, "open_streams": $OPEN_STREAMS}
EOF
mkdir -p "$RESULTS"
python3 bench/report.py "$RAW" "$RESULTS"
