#!/usr/bin/env python3
"""Streaming (SSE) load client for the overhead benchmark, standard library only.

Two modes, each printing one JSON object on stdout:

  sequential  N streaming requests one after another, each on a fresh connection (the connect
              is not timed). TTFB is the time from the request's last byte sent to the first
              byte of the first `data:` event; total is the time to `data: [DONE]`.
  concurrent  N streams opened at once (asyncio), held until each ends; reports how many
              completed, failed, and their TTFB/total percentiles under that load.
"""

import argparse
import asyncio
import json
import socket
import sys
import time

BODY = (
    '{"model":"%s","stream":true,'
    '"messages":[{"role":"user","content":"hello there"}]}'
)


def request_bytes(host, port, model, key):
    body = (BODY % model).encode()
    head = [
        "POST /v1/chat/completions HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if key:
        head.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def percentile(values, fraction):
    """Nearest-rank percentile of a list of numbers (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(round(fraction * len(ordered) + 0.5)))
    return ordered[min(rank, len(ordered)) - 1]


def summarise(ttfb, total):
    micros = lambda v: None if v is None else round(v * 1e6, 1)  # noqa: E731
    return {
        "ttfb_p50_us": micros(percentile(ttfb, 0.50)),
        "ttfb_p99_us": micros(percentile(ttfb, 0.99)),
        "total_p50_us": micros(percentile(total, 0.50)),
        "total_p99_us": micros(percentile(total, 0.99)),
    }


class Scan:
    """Finds the end of the response head, the first event and `[DONE]` in a byte stream."""

    def __init__(self):
        self.buffer = b""
        self.head_end = -1
        self.status = None
        self.first_event = False
        self.done = False

    def feed(self, data):
        self.buffer += data
        if self.head_end < 0:
            self.head_end = self.buffer.find(b"\r\n\r\n")
            if self.head_end >= 0:
                line = self.buffer.split(b"\r\n", 1)[0].split()
                self.status = int(line[1]) if len(line) > 1 else 0
        if self.head_end >= 0:
            body = self.buffer[self.head_end + 4 :]
            if not self.first_event and b"data:" in body:
                self.first_event = True
            if b"data: [DONE]" in body:
                self.done = True
            # Keep only a tail long enough to match a marker split across reads.
            if len(body) > 64 and not self.done:
                self.buffer = self.buffer[: self.head_end + 4] + body[-32:]


def sequential(args):
    payload = request_bytes(args.host, args.port, args.model, args.key)
    ttfb, total, errors = [], [], 0
    for index in range(args.warmup + args.requests):
        measured = index >= args.warmup
        sock = socket.create_connection((args.host, args.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        scan = Scan()
        try:
            sock.sendall(payload)
            sent = time.perf_counter()
            first = None
            while not scan.done:
                data = sock.recv(65536)
                if not data:
                    break
                scan.feed(data)
                if first is None and scan.first_event:
                    first = time.perf_counter()
            end = time.perf_counter()
        finally:
            sock.close()
        if scan.status != 200 or not scan.done or first is None:
            errors += measured
            continue
        if measured:
            ttfb.append(first - sent)
            total.append(end - sent)
    result = {"mode": "sequential", "requests": args.requests, "ok": len(ttfb), "errors": errors}
    result.update(summarise(ttfb, total))
    return result


async def one_stream(args, payload, ttfb, total, failures, started):
    try:
        reader, writer = await asyncio.open_connection(args.host, args.port)
    except OSError as error:
        failures.append(f"connect: {error}")
        return
    try:
        await started.wait()
        writer.write(payload)
        await writer.drain()
        sent = time.perf_counter()
        scan, first = Scan(), None
        while not scan.done:
            data = await asyncio.wait_for(reader.read(65536), timeout=args.timeout)
            if not data:
                break
            scan.feed(data)
            if first is None and scan.first_event:
                first = time.perf_counter()
        if scan.status == 200 and scan.done and first is not None:
            ttfb.append(first - sent)
            total.append(time.perf_counter() - sent)
        else:
            failures.append(f"status {scan.status}, done {scan.done}")
    except (OSError, asyncio.TimeoutError) as error:
        failures.append(type(error).__name__)
    finally:
        writer.close()


async def concurrent(args):
    payload = request_bytes(args.host, args.port, args.model, args.key)
    ttfb, total, failures = [], [], []
    started = asyncio.Event()
    tasks = [
        asyncio.create_task(one_stream(args, payload, ttfb, total, failures, started))
        for _ in range(args.requests)
    ]
    # Let every connection open first, then send all requests together.
    await asyncio.sleep(args.connect_wait)
    began = time.perf_counter()
    started.set()
    await asyncio.gather(*tasks)
    result = {
        "mode": "concurrent",
        "streams": args.requests,
        "ok": len(ttfb),
        "errors": len(failures),
        "error_samples": sorted(set(failures))[:5],
        "wall_s": round(time.perf_counter() - began, 3),
    }
    result.update(summarise(ttfb, total))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["sequential", "concurrent"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="echo/echo-1")
    parser.add_argument("--key", default="")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--connect-wait", type=float, default=2.0)
    args = parser.parse_args()
    if args.mode == "sequential":
        result = sequential(args)
    else:
        result = asyncio.run(concurrent(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
