"""Bad input over HTTP: 4xx with OpenAI-shaped errors, never FastAPI's 422."""

from __future__ import annotations

import pytest

from conftest import CHAT_MODEL, EMBED_MODEL, assert_openai_error, chat_body

MSG = [{"role": "user", "content": "hi"}]

BAD_CHAT = {
    "empty messages": {"model": CHAT_MODEL, "messages": []},
    "missing messages": {"model": CHAT_MODEL},
    "messages not a list": {"model": CHAT_MODEL, "messages": "hi"},
    "message without role": {"model": CHAT_MODEL, "messages": [{"content": "hi"}]},
    "unknown role": {"model": CHAT_MODEL, "messages": [{"role": "wizard", "content": "hi"}]},
    "content wrong type": {"model": CHAT_MODEL, "messages": [{"role": "user", "content": 5}]},
    "missing model": {"messages": MSG},
    "empty model": {"model": "", "messages": MSG},
    "model wrong type": {"model": 7, "messages": MSG},
    "negative max_tokens": chat_body(max_tokens=-1),
    "zero max_tokens": chat_body(max_tokens=0),
    "max_tokens as string": chat_body(max_tokens="10"),
    "max_tokens float": chat_body(max_tokens=2.5),
    "temperature too high": chat_body(temperature=2.5),
    "temperature negative": chat_body(temperature=-0.1),
    "temperature as string": chat_body(temperature="hot"),
    "temperature numeric string": chat_body(temperature="0.5"),
    "top_p zero": chat_body(top_p=0),
    "top_p above one": chat_body(top_p=1.5),
    "top_k negative": chat_body(top_k=-1),
    "seed negative": chat_body(seed=-5),
    "presence_penalty out of range": chat_body(presence_penalty=3),
    "frequency_penalty out of range": chat_body(frequency_penalty=-3),
    "stream not bool": chat_body(stream="yes"),
    "n greater than one": chat_body(n=2),
    "too many stops": chat_body(stop=["a", "b", "c", "d", "e"]),
    "empty stop": chat_body(stop=[""]),
    "logit_bias bad key": chat_body(logit_bias={"abc": 1.0}),
    "logit_bias out of range": chat_body(logit_bias={"42": 500.0}),
}


@pytest.mark.parametrize("body", list(BAD_CHAT.values()), ids=list(BAD_CHAT))
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_bad_chat_request_is_400(http, body, stream):
    if stream:
        body = dict(body, stream=True) if "stream" not in body else body
    err = assert_openai_error(http.post("/v1/chat/completions", json=body), 400)
    assert err["type"] == "invalid_request_error"


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_404(http, stream):
    err = assert_openai_error(
        http.post("/v1/chat/completions", json=chat_body(model="gpt-17", stream=stream)),
        404, "model_not_found")
    assert "gpt-17" in err["message"]


def test_embedding_model_cannot_chat(http):
    assert_openai_error(http.post("/v1/chat/completions", json=chat_body(model=EMBED_MODEL)),
                        400, "model_not_supported")


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_longer_than_context_is_400(http, stream):
    body = chat_body("hello " * 5000, stream=stream)
    err = assert_openai_error(http.post("/v1/chat/completions", json=body), 400,
                              "context_length_exceeded")
    assert "context" in err["message"]


def test_body_not_json(http):
    r = http.post("/v1/chat/completions", content=b"{not json",
                  headers={"content-type": "application/json"})
    assert_openai_error(r, 400, "invalid_json")


def test_body_not_an_object(http):
    assert_openai_error(http.post("/v1/chat/completions", json=[1, 2]), 400)


def test_unknown_route_is_openai_shaped(http):
    assert_openai_error(http.get("/v1/nothing-here"), 404)


def test_wrong_method_is_openai_shaped(http):
    assert_openai_error(http.get("/v1/chat/completions"), 405)


BAD_EMBED = {
    "empty list": {"model": EMBED_MODEL, "input": []},
    "empty string": {"model": EMBED_MODEL, "input": ""},
    "token ids": {"model": EMBED_MODEL, "input": [1, 2, 3]},
    "missing input": {"model": EMBED_MODEL},
    "bad encoding": {"model": EMBED_MODEL, "input": "x", "encoding_format": "int8"},
    "wrong dimensions": {"model": EMBED_MODEL, "input": "x", "dimensions": 128},
    "missing model": {"input": "x"},
    "chat model": {"model": CHAT_MODEL, "input": "x"},
}


@pytest.mark.parametrize("body", list(BAD_EMBED.values()), ids=list(BAD_EMBED))
def test_bad_embedding_request_is_400(http, body):
    assert_openai_error(http.post("/v1/embeddings", json=body), 400)


def test_unknown_embedding_model_is_404(http):
    assert_openai_error(http.post("/v1/embeddings", json={"model": "nope", "input": "x"}),
                        404, "model_not_found")


def test_too_many_embedding_inputs(http, server):
    n = server.settings.embedding_max_batch + 1
    assert_openai_error(http.post("/v1/embeddings", json={"model": EMBED_MODEL,
                                                           "input": ["x"] * n}),
                        400, "too_many_inputs")
