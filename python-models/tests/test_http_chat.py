"""Chat over the OpenAI-compatible HTTP API, against the real SmolLM2 model."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import httpx

from conftest import CHAT_MODEL, chat_body


def sse_events(resp):
    """Parsed `data:` payloads of an SSE response, with arrival times."""
    for line in resp.iter_lines():
        if not line.startswith("data: "):
            continue
        payload = line[len("data: "):]
        yield time.perf_counter(), (payload if payload == "[DONE]" else json.loads(payload))


def test_non_streaming_completion(http):
    r = http.post("/v1/chat/completions", json=chat_body("What is the capital of France?",
                                                         max_tokens=16))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == CHAT_MODEL
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 5
    assert 1 <= usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert r.headers["x-request-id"]


def test_max_tokens_gives_length(http):
    r = http.post("/v1/chat/completions",
                  json=chat_body("Write a long story about a dragon.", max_tokens=5))
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5


def test_streaming_arrives_token_by_token(http):
    body = chat_body("Count from one to twenty in words.", max_tokens=24, stream=True,
                     stream_options={"include_usage": True}, ignore_eos=True)
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r))
    assert events[-1][1] == "[DONE]"
    chunks = [e for _, e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [(t, c) for t, c in events[:-1]
               if c["choices"] and c["choices"][0]["delta"].get("content")]
    # one chunk per token: several content chunks, spread over time
    assert len(content) >= 10
    assert content[0][0] < content[-1][0]
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "length"
    usage = chunks[-1]
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 24
    assert usage["usage"]["total_tokens"] == (usage["usage"]["prompt_tokens"] + 24)


def test_stream_without_include_usage_has_no_usage_chunk(http):
    with http.stream("POST", "/v1/chat/completions",
                     json=chat_body(max_tokens=4, stream=True)) as r:
        events = [e for _, e in sse_events(r)]
    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] in ("stop", "length")


def test_stream_and_non_stream_agree(http):
    body = chat_body("Name three colours.", max_tokens=12)
    whole = http.post("/v1/chat/completions", json=body).json()
    with http.stream("POST", "/v1/chat/completions", json=dict(body, stream=True)) as r:
        text = "".join(e["choices"][0]["delta"].get("content") or ""
                       for _, e in sse_events(r) if e != "[DONE]" and e["choices"])
    assert text == whole["choices"][0]["message"]["content"]


def test_temperature_zero_is_deterministic(http):
    body = chat_body("Tell me a fact about the moon.", max_tokens=24)
    a = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    b = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert a and a == b


def test_stop_sequence(http):
    r = http.post("/v1/chat/completions", json=chat_body(
        "Count from 1 to 10, separated by commas.", max_tokens=40, stop=["5"]))
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert "5" not in body["choices"][0]["message"]["content"]


def test_disconnect_stops_generation_and_frees_slot(http, engine):
    rid = f"cancel-{uuid.uuid4().hex}"
    body = chat_body("Write a very long essay about the sea.", max_tokens=3000,
                     ignore_eos=True, stream=True)
    seen = 0
    with http.stream("POST", "/v1/chat/completions", json=body,
                     headers={"x-request-id": rid}) as r:
        for _, ev in sse_events(r):
            if ev != "[DONE]" and ev["choices"] and ev["choices"][0]["delta"].get("content"):
                seen += 1
                if seen == 3:
                    break
    # leaving the block closes the connection mid-stream; 3000 tokens would
    # take a minute or more, so idling quickly means generation was stopped.
    assert engine.wait_idle(timeout=30)
    rec = next(r for r in engine.records if r.request_id == rid)
    assert rec.cancelled
    assert rec.chunks < 3000
    # the slot is free: a new request completes
    r = http.post("/v1/chat/completions", json=chat_body(max_tokens=4))
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1


def test_two_concurrent_streams_both_finish(base_url):
    barrier = threading.Barrier(2)
    results: dict[int, list] = {}

    def run(i: int) -> None:
        body = chat_body(f"Story number {i}: tell me about a cat.", max_tokens=32,
                         ignore_eos=True, stream=True)
        with httpx.Client(base_url=base_url, timeout=120) as client:
            barrier.wait()
            with client.stream("POST", "/v1/chat/completions", json=body) as r:
                results[i] = list(sse_events(r))

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(results) == {0, 1}
    for events in results.values():
        assert events[-1][1] == "[DONE]"
        assert events[-2][1]["choices"][0]["finish_reason"] == "length"
    # the two generations overlapped (two slots, continuous batching)
    a, b = results[0], results[1]
    assert a[1][0] < b[-2][0] and b[1][0] < a[-2][0]


def test_non_streaming_disconnect_stops_generation(server, engine):
    rid = f"nonstream-cancel-{uuid.uuid4().hex}"
    body = json.dumps(chat_body("Write a very long essay about forests.", max_tokens=3000,
                                ignore_eos=True)).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Request-Id: {rid}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(head + body)
        assert engine.wait_started(rid, timeout=30)
    # socket closed while the completion was being generated
    assert engine.wait_idle(timeout=30)
    rec = next(r for r in engine.records if r.request_id == rid)
    assert rec.cancelled and rec.chunks < 3000


def test_grammar_constrains_output(http):
    r = http.post("/v1/chat/completions", json=chat_body(
        "Is the sky blue? Answer yes or no.", max_tokens=5,
        grammar='root ::= "yes" | "no"'))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] in ("yes", "no")


def test_json_schema_response_format(http):
    schema = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"]}
    r = http.post("/v1/chat/completions", json=chat_body(
        "Name a city in Japan as JSON.", max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"schema": schema}}))
    assert r.status_code == 200, r.text
    assert isinstance(json.loads(r.json()["choices"][0]["message"]["content"])["city"], str)


def test_same_seed_same_sample(http):
    body = chat_body("Invent a name for a dog.", max_tokens=12, temperature=1.0, seed=1234)
    a = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    b = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert a == b
