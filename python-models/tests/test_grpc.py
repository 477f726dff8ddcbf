"""The gRPC contract (proto/model.proto) against the real models."""

from __future__ import annotations

import threading
import time
import uuid

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import CHAT_MODEL, EMBED_MODEL, grpc_chat
from model_server.generated import model_pb2 as pb


def test_chat_streams_token_by_token(stub):
    rid = uuid.uuid4().hex
    chunks, times = [], []
    for chunk in stub.Chat(grpc_chat("Count from one to twenty in words.", max_tokens=20,
                                     ignore_eos=True, request_id=rid), timeout=120):
        chunks.append(chunk)
        times.append(time.perf_counter())
    deltas = [c for c in chunks if c.delta]
    assert len(deltas) >= 10
    assert times[0] < times[-1]
    assert all(c.request_id == rid and c.model == CHAT_MODEL for c in chunks)
    assert len({c.id for c in chunks}) == 1
    last = chunks[-1]
    assert last.HasField("finish_reason")
    assert last.finish_reason == pb.FINISH_REASON_LENGTH
    assert last.HasField("usage")
    assert last.usage.completion_tokens == 20
    assert last.usage.total_tokens == last.usage.prompt_tokens + 20
    assert not any(c.HasField("finish_reason") or c.HasField("usage") for c in chunks[:-1])


def test_chat_matches_http(stub, http):
    text = "".join(c.delta for c in stub.Chat(grpc_chat("Name a fruit.", max_tokens=10)))
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Name a fruit."}],
            "max_tokens": 10, "temperature": 0}
    assert text == http.post("/v1/chat/completions", json=body).json()[
        "choices"][0]["message"]["content"]


def test_chat_deterministic_at_temperature_zero(stub):
    req = grpc_chat("Tell me a fact about the sun.", max_tokens=20)
    a = "".join(c.delta for c in stub.Chat(req))
    b = "".join(c.delta for c in stub.Chat(req))
    assert a and a == b


def test_cancel_stops_generation_and_frees_slot(stub, engine):
    rid = f"grpc-cancel-{uuid.uuid4().hex}"
    call = stub.Chat(grpc_chat("Write a very long essay about mountains.", max_tokens=3000,
                               ignore_eos=True, request_id=rid))
    got = 0
    for chunk in call:
        if chunk.delta:
            got += 1
            if got == 3:
                break
    call.cancel()
    assert engine.wait_idle(timeout=30)
    rec = next(r for r in engine.records if r.request_id == rid)
    assert rec.cancelled and rec.chunks < 3000
    last = list(stub.Chat(grpc_chat(max_tokens=4), timeout=60))[-1]
    assert last.usage.completion_tokens >= 1


def test_deadline_stops_generation(stub, engine):
    rid = f"grpc-deadline-{uuid.uuid4().hex}"
    call = stub.Chat(grpc_chat("Write a very long essay about rivers.", max_tokens=3000,
                               ignore_eos=True, request_id=rid), timeout=1.0)
    with pytest.raises(grpc.RpcError) as info:
        for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert engine.wait_idle(timeout=30)
    assert next(r for r in engine.records if r.request_id == rid).cancelled


def test_two_concurrent_chats(stub):
    barrier = threading.Barrier(2)
    out: dict[int, list] = {}

    def run(i):
        barrier.wait()
        out[i] = list(stub.Chat(grpc_chat(f"Poem {i} about the wind.", max_tokens=24,
                                          ignore_eos=True), timeout=120))

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(out) == {0, 1}
    for chunks in out.values():
        assert chunks[-1].finish_reason == pb.FINISH_REASON_LENGTH
        assert chunks[-1].usage.completion_tokens == 24


def _bad(**kw):
    return grpc_chat(**kw)


BAD = {
    "empty messages": (_bad(messages=[]), grpc.StatusCode.INVALID_ARGUMENT),
    "unknown model": (_bad(model="gpt-17"), grpc.StatusCode.NOT_FOUND),
    "empty model": (_bad(model=""), grpc.StatusCode.INVALID_ARGUMENT),
    "embedding model": (_bad(model=EMBED_MODEL), grpc.StatusCode.INVALID_ARGUMENT),
    "negative max_tokens": (_bad(max_tokens=-3), grpc.StatusCode.INVALID_ARGUMENT),
    "zero max_tokens": (_bad(max_tokens=0), grpc.StatusCode.INVALID_ARGUMENT),
    "temperature too high": (_bad(sampling=pb.SamplingParams(temperature=7)),
                             grpc.StatusCode.INVALID_ARGUMENT),
    "temperature nan": (_bad(sampling=pb.SamplingParams(temperature=float("nan"))),
                        grpc.StatusCode.INVALID_ARGUMENT),
    "top_p zero": (_bad(sampling=pb.SamplingParams(top_p=0)), grpc.StatusCode.INVALID_ARGUMENT),
    "top_k negative": (_bad(sampling=pb.SamplingParams(top_k=-1)),
                       grpc.StatusCode.INVALID_ARGUMENT),
    "seed negative": (_bad(sampling=pb.SamplingParams(seed=-1)),
                      grpc.StatusCode.INVALID_ARGUMENT),
    "penalty out of range": (_bad(sampling=pb.SamplingParams(presence_penalty=5)),
                             grpc.StatusCode.INVALID_ARGUMENT),
    "unknown role": (_bad(messages=[pb.ChatMessage(role="wizard", content="x")]),
                     grpc.StatusCode.INVALID_ARGUMENT),
    "too many stops": (_bad(stop=["a", "b", "c", "d", "e"]), grpc.StatusCode.INVALID_ARGUMENT),
    "json_schema not json": (_bad(json_schema="{nope"), grpc.StatusCode.INVALID_ARGUMENT),
    "prompt beyond context": (_bad(content="hello " * 5000), grpc.StatusCode.INVALID_ARGUMENT),
}


@pytest.mark.parametrize("req,code", list(BAD.values()), ids=list(BAD))
def test_bad_chat_request_status(stub, req, code):
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Chat(req, timeout=60))
    assert info.value.code() == code
    assert info.value.details()


def test_embed(stub):
    texts = ["A man is eating food.", "A man is eating a piece of bread.",
             "The stock market fell sharply today."]
    resp = stub.Embed(pb.EmbedRequest(model=EMBED_MODEL, input=texts))
    assert resp.model == EMBED_MODEL
    assert [e.index for e in resp.data] == [0, 1, 2]
    vecs = np.array([list(e.values) for e in resp.data])
    assert vecs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-3)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2
    assert resp.usage.prompt_tokens == resp.usage.total_tokens > 0


@pytest.mark.parametrize("req,code", [
    (pb.EmbedRequest(model=EMBED_MODEL), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.EmbedRequest(model=EMBED_MODEL, input=[""]), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.EmbedRequest(model="nope", input=["x"]), grpc.StatusCode.NOT_FOUND),
    (pb.EmbedRequest(model=CHAT_MODEL, input=["x"]), grpc.StatusCode.INVALID_ARGUMENT),
], ids=["no input", "empty string", "unknown model", "chat model"])
def test_bad_embed_status(stub, req, code):
    with pytest.raises(grpc.RpcError) as info:
        stub.Embed(req, timeout=30)
    assert info.value.code() == code


def test_list_models(stub, server):
    resp = stub.ListModels(pb.ListModelsRequest())
    by_id = {m.id: m for m in resp.models}
    chat, emb = by_id[CHAT_MODEL], by_id[EMBED_MODEL]
    assert chat.kind == pb.MODEL_KIND_CHAT and emb.kind == pb.MODEL_KIND_EMBEDDING
    assert chat.context_length == server.settings.chat_slot_ctx
    assert emb.embedding_dimensions == 384
    assert chat.owned_by


def test_health_service(channel):
    h = health_pb2_grpc.HealthStub(channel)
    for service in ("", "aigateway.model.v1.ModelService"):
        resp = h.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as info:
        h.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_grammar_and_stop_over_grpc(stub):
    chunks = list(stub.Chat(grpc_chat("Is water wet? Answer yes or no.", max_tokens=5,
                                      grammar='root ::= "yes" | "no"'), timeout=60))
    assert "".join(c.delta for c in chunks) in ("yes", "no")
    chunks = list(stub.Chat(grpc_chat("Count from 1 to 10, separated by commas.",
                                      max_tokens=40, stop=["5"]), timeout=60))
    assert chunks[-1].finish_reason == pb.FINISH_REASON_STOP
    assert "5" not in "".join(c.delta for c in chunks)
