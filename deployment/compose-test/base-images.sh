#!/usr/bin/env bash
# Builds the local stand-ins for the public base images the stack's Dockerfiles and compose
# files name, from Debian's packages only (no registry holds images on these machines):
#   debian (debootstrap, cached as a tarball; plus this machine's CA bundle), python 3.11,
#   node 20 (the host's own node), nginx, postgres (with the official image's env contract),
#   redis, prometheus.
# Each is tagged localhost/aigw-test/<name>:<tag>, skipped when already in podman's storage
# with the same recipe (a label holds the recipe's hash). Prints the image variables to stdout
# as NAME=value lines for compose's environment; everything else goes to stderr.
# Env: CONTAINERS_CONF (run.sh points it at containers.conf), AIGW_CACHE.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${AIGW_CACHE:-$HOME/.cache/ai-gateway}/compose-test"
SUITE=bookworm
PREFIX=localhost/aigw-test
mkdir -p "$CACHE"
log() { printf '   [base-images] %s\n' "$*" >&2; }

# 1. Debian: debootstrap minbase once, then a tarball import (the tarball is the cache), then
#    this machine's CA bundle on top (images/debian/Containerfile says why).
tarball="$CACHE/debian-$SUITE-minbase.tar"
rootfs="$PREFIX/debian-rootfs:$SUITE"
if ! podman image exists "$rootfs"; then
    if [ ! -s "$tarball" ]; then
        log "debootstrap --variant=minbase $SUITE (once; cached in $tarball)"
        root="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
        trap 'rm -rf "$root"' EXIT
        debootstrap --variant=minbase "$SUITE" "$root" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
        # Like the official slim image: no apt lists or caches in the base layer.
        rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
        tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$root"; trap - EXIT
    fi
    log "importing $tarball as $rootfs"
    podman import --change 'CMD ["bash"]' "$tarball" "$rootfs" >/dev/null
fi
ca_bundle=/etc/ssl/certs/ca-certificates.crt
debian="$PREFIX/debian:$SUITE-slim"
recipe="$( (cat "$HERE/images/debian/Containerfile" "$ca_bundle"; podman image inspect --format '{{.Id}}' "$rootfs") | sha256sum | cut -c1-16)"
if [ "$(podman image inspect --format '{{ index .Labels "aigw.recipe" }}' "$debian" 2>/dev/null)" != "$recipe" ]; then
    log "building $debian (with this machine's CA bundle)"
    ctx="$(mktemp -d)"
    cp "$HERE/images/debian/Containerfile" "$ctx/" && cp "$ca_bundle" "$ctx/host-ca.crt"
    podman build -q --format docker --label "aigw.recipe=$recipe" --build-arg "ROOTFS=$rootfs" -t "$debian" "$ctx" >&2
    rm -rf "$ctx"
fi

# 2. The others: one Containerfile each under images/, built FROM the Debian base.
build() { # name tag dir [extra context files...]
    local name=$1 tag=$2 dir=$3
    local image="$PREFIX/$name:$tag"
    local recipe
    recipe="$( (cat "$dir"/*; podman image inspect --format '{{.Id}}' "$debian") | sha256sum | cut -c1-16)"
    if [ "$(podman image inspect --format '{{ index .Labels "aigw.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
        return
    fi
    log "building $image"
    podman build -q --format docker --label "aigw.recipe=$recipe" \
        --build-arg "BASE=$PREFIX/debian:$SUITE-slim" -t "$image" "$dir" >&2
}
build python 3.11 "$HERE/images/python"
build nginx bookworm "$HERE/images/nginx"
build postgres bookworm "$HERE/images/postgres"
build redis bookworm "$HERE/images/redis"
build prometheus bookworm "$HERE/images/prometheus"

# node: Debian's nodejs is 18, too old for the dashboard's Vite; the machine's own node 20 goes
# into the image (copied, so the context is a temporary directory).
node_bin="$(command -v node || true)"
if [ -z "$node_bin" ]; then echo "base-images.sh: node is not installed on this machine" >&2; exit 1; fi
node_version="$("$node_bin" --version)"
node_image="$PREFIX/node:20"
node_recipe="$node_version-$(podman image inspect --format '{{.Id}}' "$debian" | cut -c1-12)"
if [ "$(podman image inspect --format '{{ index .Labels "aigw.recipe" }}' "$node_image" 2>/dev/null)" != "$node_recipe" ]; then
    log "building $node_image from this machine's node $node_version"
    ctx="$(mktemp -d)"
    cp "$node_bin" "$ctx/node"
    cp -r "$(dirname "$(readlink -f "$(command -v npm)")")/.." "$ctx/npm"
    cp "$HERE/images/node/Containerfile" "$ctx/"
    podman build -q --format docker --label "aigw.recipe=$node_recipe" \
        --build-arg "BASE=$PREFIX/debian:$SUITE-slim" -t "$node_image" "$ctx" >&2
    rm -rf "$ctx"
fi

cat <<VARS
RUNTIME_IMAGE=$PREFIX/debian:$SUITE-slim
PYTHON_IMAGE=$PREFIX/python:3.11
NODE_IMAGE=$PREFIX/node:20
NGINX_IMAGE=$PREFIX/nginx:$SUITE
POSTGRES_IMAGE=$PREFIX/postgres:$SUITE
REDIS_IMAGE=$PREFIX/redis:$SUITE
PROMETHEUS_IMAGE=$PREFIX/prometheus:$SUITE
VARS
