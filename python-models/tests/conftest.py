"""One real server (real packaged models, HTTP + gRPC on free ports) for the
whole test session, running in this process on a background thread so tests
can also look at the engine's state (in-flight generations)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import grpc  # noqa: E402
import httpx  # noqa: E402
import pytest  # noqa: E402

from model_server.config import load_settings  # noqa: E402
from model_server.generated import model_pb2, model_pb2_grpc  # noqa: E402
from model_server.hub import ModelHub  # noqa: E402
from model_server.server import BackgroundServer  # noqa: E402

CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="session")
def server():
    env = dict(os.environ, HOST="127.0.0.1", PORT="0", GRPC_PORT="0", LOG_LEVEL="error")
    settings = load_settings(env)
    hub = ModelHub(settings).load()
    srv = BackgroundServer(settings, hub).start()
    yield srv
    srv.close()
    hub.close()


@pytest.fixture(scope="session")
def engine(server):
    return server.hub.chat


@pytest.fixture(scope="session")
def http(server):
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def base_url(server):
    return f"http://127.0.0.1:{server.http_port}"


@pytest.fixture(scope="session")
def channel(server):
    ch = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    yield ch
    ch.close()


@pytest.fixture(scope="session")
def stub(channel):
    return model_pb2_grpc.ModelServiceStub(channel)


def chat_body(content="Say hello.", **kw):
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": content}],
            "max_tokens": 8, "temperature": 0}
    body.update(kw)
    return body


def grpc_chat(content="Say hello.", max_tokens=8, **kw):
    sampling = kw.pop("sampling", model_pb2.SamplingParams(temperature=0.0))
    return model_pb2.ChatRequest(
        model=kw.pop("model", CHAT_MODEL),
        messages=kw.pop("messages", [model_pb2.ChatMessage(role="user", content=content)]),
        sampling=sampling, max_tokens=max_tokens, **kw)


def assert_openai_error(resp, status, code=None):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    assert "code" in err
    if code is not None:
        assert err["code"] == code, err
    return err
