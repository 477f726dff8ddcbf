"""Embeddings over HTTP with the real all-MiniLM-L6-v2 int8 model."""

from __future__ import annotations

import base64

import numpy as np

from conftest import EMBED_MODEL


def embed(http, inputs, **kw):
    r = http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": inputs, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def test_shape_and_similarity(http):
    body = embed(http, ["A man is eating food.", "A man is eating a piece of bread.",
                        "The stock market fell sharply as investors sold bank shares."])
    assert body["object"] == "list" and body["model"] == EMBED_MODEL
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    v = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)
    related, unrelated = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert related > 0.5
    assert related - unrelated > 0.3, (related, unrelated)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 10


def test_batch_matches_single(http):
    texts = ["short", "a somewhat longer sentence about the weather in spring",
             "medium length text here"]
    batch = np.array([d["embedding"] for d in embed(http, texts)["data"]])
    for i, t in enumerate(texts):
        single = np.array(embed(http, t)["data"][0]["embedding"])
        assert float(single @ batch[i]) > 0.999


def test_base64_encoding(http):
    f = embed(http, "hello world")["data"][0]["embedding"]
    b = embed(http, "hello world", encoding_format="base64")["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(b), dtype="<f4")
    assert np.allclose(decoded, np.array(f, dtype=np.float32))


def test_long_input_is_truncated_not_rejected(http):
    body = embed(http, "word " * 2000)
    assert len(body["data"][0]["embedding"]) == 384
    assert body["usage"]["prompt_tokens"] == 256
