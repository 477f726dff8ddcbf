"""Health, model listing and Prometheus metrics."""

from __future__ import annotations

import re

from conftest import CHAT_MODEL, EMBED_MODEL, chat_body


def test_health(http):
    for path in ("/health", "/ready"):
        r = http.get(path)
        assert r.status_code == 200 and r.json()["status"] == "ok", path


def test_models(http, server):
    body = http.get("/v1/models").json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert by_id[CHAT_MODEL]["kind"] == "chat"
    assert by_id[CHAT_MODEL]["context_length"] == server.settings.chat_slot_ctx
    assert by_id[EMBED_MODEL]["kind"] == "embedding"
    assert by_id[EMBED_MODEL]["embedding_dimensions"] == 384
    assert http.get(f"/v1/models/{CHAT_MODEL}").json()["id"] == CHAT_MODEL
    assert http.get("/v1/models/nope").status_code == 404


def _value(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}\{{[^}}]*{re.escape(labels)}[^}}]*\}} ([0-9.e+-]+)$"
    return sum(float(m) for m in re.findall(pattern, text, re.M))


def test_metrics(http):
    before = http.get("/metrics").text
    r = http.post("/v1/chat/completions", json=chat_body(max_tokens=6, ignore_eos=True))
    assert r.status_code == 200
    http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": ["a", "b"]})
    http.post("/v1/chat/completions", json=chat_body(temperature=9))
    m = http.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    after = m.text
    model = f'model="{CHAT_MODEL}"'
    assert (_value(after, "model_server_generated_tokens_total", model)
            - _value(before, "model_server_generated_tokens_total", model)) == 6
    assert (_value(after, "model_server_time_to_first_token_seconds_count", model)
            > _value(before, "model_server_time_to_first_token_seconds_count", model))
    assert _value(after, "model_server_tokens_per_second_count", model) >= 1
    assert (_value(after, "model_server_requests_total", 'status="200"')
            > _value(before, "model_server_requests_total", 'status="200"'))
    assert (_value(after, "model_server_requests_total", 'status="400"')
            > _value(before, "model_server_requests_total", 'status="400"'))
    assert (_value(after, "model_server_embedding_inputs_total")
            - _value(before, "model_server_embedding_inputs_total")) == 2
    assert "model_server_active_generations" in after
