"""A Consul agent stand-in for `make compose-test` (no Consul image can be made here).

Serves the part of Consul's HTTP API the stack uses, with Consul's semantics:
- service definitions from the agent's config dir (`{"service": {...}}` JSON files, as
  `consul agent -config-dir` loads them) and `PUT /v1/agent/service/register` / `deregister`;
- HTTP checks run by the stub itself (interval, timeout), so only passing instances are healthy;
- blocking queries (`index`, `wait`, `X-Consul-Index`) on `/v1/catalog/services`,
  `/v1/catalog/service/<name>` and `/v1/health/service/<name>` (`passing` filters);
- `/v1/agent/self` (Prometheus asks it for the datacenter) and `/v1/status/leader`.
Standard library only.
"""

import glob
import json
import os
import re
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

DATACENTER = "dc1"
NODE = "consul-stub"
LOCK = threading.Condition()
STATE = {"index": 1, "services": {}, "status": {}}  # id -> definition, id -> check status


def duration(text, default):
    match = re.fullmatch(r"(\d+)(ms|s|m)?", text or "")
    if not match:
        return default
    value, unit = int(match.group(1)), match.group(2) or "s"
    return value / 1000 if unit == "ms" else value * (60 if unit == "m" else 1)


def bump():
    STATE["index"] += 1
    LOCK.notify_all()


def register(definition):
    # Config files spell keys in lower case (`name`, `weights.passing`), the HTTP API in
    # Consul's own case (`Name`, `Weights.Passing`); both arrive here. Meta is kept as written.
    def title(key):
        return "ID" if key.lower() == "id" else key[:1].upper() + key[1:]

    definition = {title(k): v for k, v in definition.items()}
    if isinstance(definition.get("Weights"), dict):
        definition["Weights"] = {title(k): v for k, v in definition["Weights"].items()}
    service_id = definition.get("ID") or definition["Name"]
    with LOCK:
        STATE["services"][service_id] = definition
        STATE["status"][service_id] = "critical" if definition.get("Check") else "passing"
        bump()


def check_loop():
    """Runs every HTTP check; a change of status is a write (new index)."""
    due = {}
    while True:
        with LOCK:
            services = dict(STATE["services"])
        now = time.monotonic()
        for service_id, definition in services.items():
            check = {k.lower(): v for k, v in (definition.get("Check") or {}).items()}
            if "http" not in check or due.get(service_id, 0) > now:
                continue
            due[service_id] = now + duration(check.get("interval"), 10)
            try:
                with urllib.request.urlopen(check["http"], timeout=duration(check.get("timeout"), 2)) as reply:
                    status = "passing" if 200 <= reply.status < 300 else "critical"
            except Exception:  # noqa: BLE001 - any failure is a failing check, as in Consul
                status = "critical"
            with LOCK:
                if service_id in STATE["status"] and STATE["status"][service_id] != status:
                    STATE["status"][service_id] = status
                    bump()
        time.sleep(0.5)


def node():
    address = os.environ.get("NODE_ADDRESS", "127.0.0.1")
    return {"ID": NODE, "Node": NODE, "Address": address, "Datacenter": DATACENTER,
            "TaggedAddresses": {"lan": address, "wan": address}, "Meta": {}}


def service_view(service_id, definition):
    return {"ID": service_id, "Service": definition["Name"], "Tags": definition.get("Tags") or [],
            "Address": definition.get("Address", ""), "Meta": definition.get("Meta") or {},
            "Port": definition.get("Port", 0),
            "Weights": definition.get("Weights") or {"Passing": 1, "Warning": 1}}


def answer(path, query):
    """The JSON body for a read, computed under LOCK."""
    services = STATE["services"]
    if path == "/v1/catalog/services":
        names = {}
        for definition in services.values():
            names.setdefault(definition["Name"], set()).update(definition.get("Tags") or [])
        return {name: sorted(tags) for name, tags in names.items()}
    match = re.fullmatch(r"/v1/(catalog|health)/service/(.+)", path)
    if match:
        kind, name = match.groups()
        rows = []
        for service_id, definition in sorted(services.items()):
            status = STATE["status"][service_id]
            tags = query.get("tag", [])
            if definition["Name"] != name or not set(tags) <= set(definition.get("Tags") or []):
                continue
            if kind == "health" and query.get("passing") and status != "passing":
                continue
            view = service_view(service_id, definition)
            if kind == "catalog":
                rows.append({**node(), "ServiceID": service_id, "ServiceName": name,
                             "ServiceTags": view["Tags"], "ServiceAddress": view["Address"],
                             "ServiceMeta": view["Meta"], "ServicePort": view["Port"],
                             "ServiceWeights": view["Weights"], "NodeMeta": {}})
            else:
                check = {"Node": NODE, "CheckID": f"service:{service_id}", "Name": "http",
                         "Status": status, "ServiceID": service_id, "ServiceName": name}
                rows.append({"Node": node(), "Service": view, "Checks": [check]})
        return rows
    if path == "/v1/agent/self":
        return {"Config": {"Datacenter": DATACENTER, "NodeName": NODE}, "Member": {"Name": NODE}}
    if path == "/v1/status/leader":
        return "127.0.0.1:8300"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body, index=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if index is not None:
            self.send_header("X-Consul-Index", str(index))
            self.send_header("X-Consul-KnownLeader", "true")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urlparse(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        wanted = int(query.get("index", ["0"])[0] or 0)
        deadline = time.monotonic() + min(duration(query.get("wait", [""])[0], 300), 600)
        with LOCK:
            # A blocking query returns when the index moves past the caller's, or at `wait`.
            while wanted and STATE["index"] <= wanted and time.monotonic() < deadline:
                LOCK.wait(deadline - time.monotonic())
            body, index = answer(url.path, query), STATE["index"]
        if body is None:
            self.reply(404, {"error": f"no such endpoint in the stub: {url.path}"})
        else:
            self.reply(200, body, index)

    def do_PUT(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        path = urlparse(self.path).path
        if path == "/v1/agent/service/register":
            register(json.loads(payload))
            self.reply(200, None)
        elif path.startswith("/v1/agent/service/deregister/"):
            with LOCK:
                service_id = path.rsplit("/", 1)[1]
                STATE["services"].pop(service_id, None)
                STATE["status"].pop(service_id, None)
                bump()
            self.reply(200, None)
        else:
            self.reply(404, {"error": f"no such endpoint in the stub: {path}"})

    def log_message(self, fmt, *args):
        if not self.path.startswith("/v1/status"):
            sys.stderr.write("consul-stub: " + fmt % args + "\n")


def main():
    config_dir = os.environ.get("CONSUL_CONFIG_DIR", "/consul/config")
    for path in sorted(glob.glob(os.path.join(config_dir, "*.json"))):
        with open(path, encoding="utf-8") as file:
            definition = json.load(file)
        for service in definition.get("services", []) + [definition.get("service")]:
            if service:
                register(service)
                print(f"consul-stub: registered {service.get('name')} from {path}", flush=True)
    threading.Thread(target=check_loop, daemon=True).start()
    port = int(os.environ.get("PORT", "8500"))
    ThreadingHTTPServer.daemon_threads = True
    print(f"consul-stub: listening on :{port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
