"""Measure time to first token and decode speed over HTTP streaming.

Usage: .venv/bin/python bench.py [BASE_URL] [RUNS]
(default http://127.0.0.1:5000, 5 runs; the server must be running)."""

from __future__ import annotations

import json
import statistics
import sys
import time

import httpx


def one(client: httpx.Client, max_tokens: int = 64, n: int = 0) -> tuple[float, float, int]:
    body = {"model": "smollm2-135m-instruct", "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"Tell me about the moon ({n})."}]}
    start = time.perf_counter()
    first = last = None
    tokens = 0
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev["choices"] and ev["choices"][0]["delta"].get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                tokens += 1
    assert first is not None and last is not None
    return first - start, (tokens - 1) / (last - first), tokens


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with httpx.Client(base_url=base, timeout=120) as client:
        one(client, 4)  # warm-up
        results = [one(client, 64, i + 1) for i in range(runs)]  # distinct prompts: no cache
    ttft = [r[0] * 1000 for r in results]
    tps = [r[1] for r in results]
    print(f"runs={runs} tokens/run={results[0][2]}")
    print(f"time to first token: median {statistics.median(ttft):.1f} ms "
          f"(min {min(ttft):.1f}, max {max(ttft):.1f})")
    print(f"decode speed: median {statistics.median(tps):.1f} tokens/s "
          f"(min {min(tps):.1f}, max {max(tps):.1f})")


if __name__ == "__main__":
    main()
