#!/usr/bin/env bash
# Installs what `make deploy-check-monitoring` and the native nginx / Prometheus end-to-end
# tests need, from Debian's packages: nginx, prometheus (with promtool), openssl, jq, curl.
# Idempotent: with everything present it installs nothing and takes well under a second.
# Run by .ci/run; on a developer machine run it once (as root, or with sudo available).
set -euo pipefail

need=()
command -v nginx >/dev/null || need+=(nginx)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)
command -v openssl >/dev/null || need+=(openssl)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -eq 0 ]; then
    echo "install-monitoring-tools: nginx, prometheus, promtool, openssl, jq, curl present"
    exit 0
fi

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "install-monitoring-tools: installing ${need[*]}"
# Debian's packages start their daemons where an init system runs; the checks and tests start
# their own processes on loopback ports, so keep the services from being started at install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod +x "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
