"""`make compose-test`'s checks, run against the development stack through nginx.

Usage: checks.py BASE_URL PROMETHEUS_URL PASSWORD
Each step prints one line; any failure raises (exit 1) with what was seen. The admin user
already exists (run.sh creates it with the gateway CLI inside the backend container); usage
rows are checked by run.sh in the PostgreSQL container afterwards, with the key id printed here.
"""

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import websocket  # websocket-client, from the tools venv

BASE, PROMETHEUS, PASSWORD = sys.argv[1:4]
WS_BASE = BASE.replace("http://", "ws://", 1)
CHAT = {"model": "smollm2", "max_tokens": 12,
        "messages": [{"role": "user", "content": "Name one colour."}]}


def step(text):
    print(f"   - {text}", flush=True)


def request(method, path, body=None, token=None, base=BASE, timeout=120):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def json_ok(method, path, body=None, token=None):
    status, _, raw = request(method, path, body, token)
    assert status == 200 or status == 201, f"{method} {path}: {status} {raw[:400]!r}"
    return json.loads(raw)


def wait_ready():
    """Healthy containers are not yet a ready gateway: python-models must pass Consul's check,
    be discovered and pass the gateway's own first health check. /ready says when."""
    started = time.monotonic()
    while True:
        status, _, raw = request("GET", "/ready", timeout=10)
        if status == 200:
            return time.monotonic() - started
        assert time.monotonic() - started < 90, f"GET /ready: {status} {raw[:400]!r} after 90 s"
        time.sleep(0.5)


def main():
    waited = wait_ready()
    step(f"GET /ready through nginx: 200 after {waited:.1f} s (python-models discovered through Consul)")

    status, headers, raw = request("GET", "/")
    assert status == 200 and b"<html" in raw.lower(), f"GET / (dashboard): {status} {raw[:200]!r}"
    step(f"dashboard page through nginx: 200, {len(raw)} bytes")

    login = json_ok("POST", "/auth/login", {"username": "admin", "password": PASSWORD})
    jwt = login["access_token"]
    step("POST /auth/login as the CLI-created admin: got a JWT")

    created = json_ok("POST", "/admin/keys", {"name": "compose-test"}, jwt)
    key, key_id = created["key"], created["id"]
    assert key.startswith("sk-"), created
    step(f"POST /admin/keys: key id {key_id} ({key[:10]}…)")

    # /ready is 200 while a discovered service has no endpoints yet (Consul answers its first
    # passing instance on a later blocking query); the first chat waits for the endpoint.
    started = time.monotonic()
    while True:
        status, _, raw = request("POST", "/v1/chat/completions", CHAT, key)
        if status != 503 or time.monotonic() - started > 90:
            break
        time.sleep(1)
    assert status == 200, f"POST /v1/chat/completions: {status} {raw[:400]!r}"
    reply = json.loads(raw)
    content = reply["choices"][0]["message"]["content"]
    assert content.strip() and reply["usage"]["completion_tokens"] > 0, reply
    step(f"REST chat with python-models (smollm2): {content.strip()[:60]!r}, usage {reply['usage']}")

    status, headers, raw = request("POST", "/v1/chat/completions", {**CHAT, "stream": True}, key)
    events = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    assert status == 200 and headers.get("Content-Type", "").startswith("text/event-stream"), (status, headers)
    assert events and events[-1] == "[DONE]" and len(events) >= 3, events
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                   for e in events[:-1] if json.loads(e).get("choices"))
    assert text.strip(), events
    step(f"SSE stream: {len(events) - 1} chunks then [DONE], text {text.strip()[:60]!r}")

    ws = websocket.create_connection(f"{WS_BASE}/v1/ws", header=[f"Authorization: Bearer {key}"], timeout=120)
    ws.send(json.dumps({"type": "chat.request", "id": "r1", "body": CHAT}))
    deltas, done = [], None
    while done is None:
        message = json.loads(ws.recv())
        assert message["type"] in ("chat.delta", "chat.done"), message
        if message["type"] == "chat.delta":
            deltas.append(message["chunk"]["choices"][0]["delta"].get("content") or "")
        else:
            done = message
    ws.close()
    assert deltas and done["usage"]["completion_tokens"] > 0, (deltas, done)
    step(f"WebSocket chat over the upgrade: {len(deltas)} deltas, {''.join(deltas).strip()[:60]!r}, usage {done['usage']}")

    reply = json_ok("POST", "/graphql", {"query": "{ me { kind keyId } models { name service } }"}, key)
    assert "errors" not in reply and reply["data"]["me"]["keyId"] == str(key_id), reply
    names = sorted(m["name"] for m in reply["data"]["models"])
    assert "smollm2" in names, reply
    step(f"GraphQL: me.kind={reply['data']['me']['kind']}, models {names}")

    # Prometheus in its container: the gateway's metrics listener (:9091) is an up target, and
    # its scrapes carry samples (scrape_samples_scraped is Prometheus' own count per target).
    deadline = time.monotonic() + 90
    while True:
        targets = json.loads(request("GET", "/api/v1/targets", base=PROMETHEUS)[2])["data"]["activeTargets"]
        up = [t for t in targets if t["scrapeUrl"].split("/")[2].endswith(":9091") and t["health"] == "up"]
        samples = 0.0
        if up:
            query = urllib.parse.quote(f'scrape_samples_scraped{{instance="{up[0]["labels"]["instance"]}"}}')
            result = json.loads(request("GET", f"/api/v1/query?query={query}", base=PROMETHEUS)[2])["data"]["result"]
            samples = float(result[0]["value"][1]) if result else 0.0
        if samples > 0:
            break
        assert time.monotonic() < deadline, f"no up :9091 target with samples: {json.dumps(targets)[:2000]}"
        time.sleep(2)
    step(f"Prometheus scrapes {up[0]['scrapeUrl']} (job {up[0]['labels']['job']}): up, "
         f"{samples:.0f} samples in its last scrape")
    print(f"KEY_ID={key_id}")


if __name__ == "__main__":
    main()
