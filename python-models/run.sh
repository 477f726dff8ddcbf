#!/usr/bin/env bash
# Starts the model server (HTTP on $PORT, default 5000; gRPC on $GRPC_PORT,
# default 50051). Run install.sh once before.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec "$HERE/.venv/bin/python" -m model_server "$@"
