#!/usr/bin/env bash
# Installs what the dashboard's build and tests need. Idempotent: `npm ci` runs only when
# package-lock.json (or Node's version) changed since the last install; Debian's chromium (and CJK
# fonts, for the Chinese screenshots) is installed only when missing. npm's download cache stays
# outside the clone (~/.npm).
#
# Env: SKIP_BROWSER=1 (build and unit tests only: no chromium), FORCE_INSTALL=1 (npm ci anyway).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$HERE"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "frontend/scripts/install.sh: Node.js 20.19+ and npm are needed (the machine's own Node.js)" >&2
    exit 1
fi
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
    echo "frontend/scripts/install.sh: Node.js $(node --version) is too old: vite 8 needs 20.19 or newer" >&2
    exit 1
fi

stamp="node_modules/.install-stamp"
want="$( (cat package-lock.json; node --version) | sha256sum | cut -d' ' -f1)"
if [ "${FORCE_INSTALL:-0}" = "1" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "frontend/scripts/install.sh: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" > "$stamp"
else
    echo "frontend/scripts/install.sh: node_modules up to date"
fi

if [ "${SKIP_BROWSER:-0}" != "1" ]; then
    need=()
    command -v chromium >/dev/null || need+=(chromium)
    dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)
    if [ ${#need[@]} -gt 0 ]; then
        echo "frontend/scripts/install.sh: apt-get install ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
    echo "frontend/scripts/install.sh: $(chromium --version)"
fi
