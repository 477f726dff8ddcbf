"""`python -m model_server` starts HTTP and gRPC in one process and stops
cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import httpx

from model_server.generated import model_pb2 as pb
from model_server.generated import model_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_module_entrypoint_serves_both_protocols():
    port, gport = _free_port(), _free_port()
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), GRPC_PORT=str(gport),
               LOG_LEVEL="info", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "model_server"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # block on the log until the models are loaded (no sleeping)
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "models loaded" in line:
                break
        else:
            raise AssertionError("server exited early:\n" + "".join(seen[-30:]))
        r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert r.status_code == 200
        with grpc.insecure_channel(f"127.0.0.1:{gport}") as ch:
            models = model_pb2_grpc.ModelServiceStub(ch).ListModels(pb.ListModelsRequest(),
                                                                    timeout=10)
            assert len(models.models) == 2
        proc.send_signal(signal.SIGTERM)
        proc.stderr.read()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_config_exits_with_message():
    env = dict(os.environ, CHAT_MODEL_PATH="/nonexistent/model.gguf")
    proc = subprocess.run([sys.executable, "-m", "model_server"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "CHAT_MODEL_PATH" in proc.stderr
