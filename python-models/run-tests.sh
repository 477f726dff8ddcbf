#!/usr/bin/env bash
# Installs (idempotent) and runs the model server's test suite.
# Extra arguments go to pytest, e.g. ./run-tests.sh -k grpc -x
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$HERE/install.sh"
cd "$HERE"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec "$HERE/.venv/bin/python" -m pytest "$@"
