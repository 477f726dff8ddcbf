#!/usr/bin/env bash
# `make deploy-check-monitoring`, the static half: the real nginx, Prometheus and Grafana files
# checked by the programs that consume them. Fails on the first error.
#   - nginx -t on docker/nginx/nginx.conf and nginx.prod.conf, rendered for loopback
#     (nginx resolves upstream names while testing, and the compose names do not resolve here);
#   - the two files' gateway `location` sets are identical;
#   - promtool check config / check rules on docker/prometheus/;
#   - every Grafana dashboard is valid JSON and every panel query parses as PromQL
#     (promtool parses them as recording rules) and names only metrics that the gateway or
#     python-models register.
# The gateway's real metrics page (promtool check metrics after traffic, every dashboard metric
# present) is checked by `cargo test --test monitoring_metrics`, which the make target also runs.
# Tools: deployment/scripts/install-monitoring-tools.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

step() { printf '  %-60s' "$*"; }
ok() { echo ok; }
for tool in nginx promtool openssl jq python3; do
    command -v "$tool" >/dev/null || {
        echo "check-monitoring: $tool is missing; run deployment/scripts/install-monitoring-tools.sh" >&2
        exit 1
    }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
render=deployment/scripts/render-monitoring-config.py

step "nginx: self-signed certificate for the TLS config"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$work/server.key" -out "$work/server.crt" 2>"$work/openssl.log" || {
    cat "$work/openssl.log" >&2
    exit 1
}
ok
for conf in nginx.conf nginx.prod.conf; do
    step "nginx -t docker/nginx/$conf"
    "$render" nginx "docker/nginx/$conf" "$work/$conf" --backend 127.0.0.1:18080 \
        --frontend 127.0.0.1:18081 --http 18082 --https 18443 --ssl-dir "$work" --prefix "$work"
    nginx -t -q -c "$work/$conf" -e "$work/nginx-error.log" || {
        cat "$work/nginx-error.log" >&2
        exit 1
    }
    ok
done
step "nginx: dev and prod serve the same gateway locations"
locations() { sed -n '/# --- gateway locations/,/# --- end of gateway locations/p' "$1"; }
if ! diff <(locations docker/nginx/nginx.conf) <(locations docker/nginx/nginx.prod.conf) >"$work/diff"; then
    echo "differ:" >&2
    cat "$work/diff" >&2
    exit 1
fi
locations docker/nginx/nginx.conf | grep -q 'location /v1/ ' || { echo "no location markers" >&2; exit 1; }
ok

step "promtool check rules docker/prometheus/alerts.yml"
promtool check rules docker/prometheus/alerts.yml >"$work/promtool.log" || {
    cat "$work/promtool.log" >&2
    exit 1
}
ok
step "promtool check config docker/prometheus/prometheus.yml"
# As written (DNS discovery of the compose services), only the rule file's path moved.
sed "s#  - /etc/prometheus/alerts.yml#  - $PWD/docker/prometheus/alerts.yml#" \
    docker/prometheus/prometheus.yml >"$work/prometheus.yml"
promtool check config "$work/prometheus.yml" >"$work/promtool.log" || {
    cat "$work/promtool.log" >&2
    exit 1
}
ok
step "prometheus.yml renders for loopback (the e2e test's form)"
"$render" prometheus docker/prometheus/prometheus.yml "$work/prometheus-local.yml" \
    --rules "$PWD/docker/prometheus/alerts.yml" --target gateway=127.0.0.1:9091 \
    --target python-models=127.0.0.1:5000 --interval 1s
promtool check config "$work/prometheus-local.yml" >"$work/promtool.log" || {
    cat "$work/promtool.log" >&2
    exit 1
}
ok

# Metric names the code registers: the gateway's (string literals in src/), actix-web-prom's
# per-route pair, the process collector's, and python-models'.
{
    grep -rhoE '"gateway_[a-z0-9_]+"' src | tr -d '"'
    printf '%s\n' gateway_http_requests_total gateway_http_requests_duration_seconds
    printf '%s\n' process_cpu_seconds_total process_resident_memory_bytes process_virtual_memory_bytes \
        process_open_fds process_max_fds process_threads process_start_time_seconds up
    grep -hoE '"model_server_[a-z0-9_]+"' python-models/model_server/metrics.py | tr -d '"'
} | sort -u >"$work/known-metrics"

for dashboard in docker/grafana/dashboards/*.json; do
    step "grafana: $dashboard"
    jq -e '.title and (.panels | length > 0)' "$dashboard" >/dev/null
    # Each panel query as a recording rule: promtool then parses it as PromQL.
    jq -r '"groups:\n  - name: panels\n    rules:", (.panels[] | .id as $id | .targets[] |
        "      - record: panel:\($id):\(.refId | ascii_downcase)\n        expr: \(.expr | @json)")' \
        "$dashboard" >"$work/panels.yml"
    promtool check rules "$work/panels.yml" >"$work/promtool.log" || {
        cat "$work/promtool.log" >&2
        exit 1
    }
    jq -r '.panels[].targets[].expr' "$dashboard" \
        | grep -oE '\b(gateway|process|model_server)_[a-z0-9_]+' \
        | sed -E 's/_(bucket|count|sum)$//' | sort -u >"$work/used-metrics"
    unknown=$(comm -23 "$work/used-metrics" "$work/known-metrics")
    if [ -n "$unknown" ]; then
        echo "panels name metrics nothing exports: $unknown" >&2
        exit 1
    fi
    jq -e '[.panels[] | select(.targets | length == 0)] | length == 0' "$dashboard" >/dev/null
    ok
done
echo "check-monitoring: all static checks passed"
