#!/usr/bin/env python3
"""Renders the stack's real nginx and Prometheus files for processes on this machine.

The files in docker/ name compose services (backend:8080, frontend:80, DNS discovery of
`backend` and `models`) and container paths. The native checks (`make deploy-check-monitoring`)
and end-to-end tests run Debian's nginx and prometheus against loopback ports instead; this
script makes exactly those substitutions and fails when an expected line is missing, so a
config change that the tests would silently stop covering breaks the check instead.

  render-monitoring-config.py nginx SRC OUT --backend H:P --frontend H:P --http PORT
      [--https PORT] [--ssl-dir DIR] [--prefix DIR] [--proxy-bind IP]
  render-monitoring-config.py prometheus SRC OUT --rules FILE --target JOB=H:P ...
      [--interval 1s]
"""

import argparse
import re
import sys


def replace_once(text, old, new, what):
    count = text.count(old)
    if count == 0:
        sys.exit(f"render: {what}: {old!r} not found; update the renderer with the config")
    return text.replace(old, new)


def render_nginx(args, text):
    text = replace_once(text, "server backend:8080;", f"server {args.backend};", "gateway upstream")
    text = replace_once(text, "server frontend:80;", f"server {args.frontend};", "dashboard upstream")
    text = replace_once(text, "listen 80 default_server;", f"listen 127.0.0.1:{args.http} default_server;", "http listener")
    if "listen 443 ssl" in text:
        if not (args.https and args.ssl_dir):
            sys.exit("render: this config serves TLS: pass --https and --ssl-dir")
        text = replace_once(text, "listen 443 ssl", f"listen 127.0.0.1:{args.https} ssl", "https listener")
        text = replace_once(text, "/etc/nginx/ssl/", args.ssl_dir.rstrip("/") + "/", "certificate paths")
    prefix = args.prefix.rstrip("/")
    text = replace_once(text, "pid /run/nginx.pid;", f"pid {prefix}/nginx.pid;", "pid file")
    # Logs to files in the prefix, so a test can read what nginx did.
    text = replace_once(text, "error_log /dev/stderr warn;", f"error_log {prefix}/error.log warn;", "error log")
    text = replace_once(text, "access_log /dev/stdout;", f"access_log {prefix}/access.log;", "access log")
    if args.proxy_bind:
        # nginx reaches the gateway from its own loopback address, as a proxy on another
        # host would, so the gateway can tell nginx from the client.
        text = replace_once(text, "        proxy_http_version 1.1;\n",
                            f"        proxy_http_version 1.1;\n        proxy_bind {args.proxy_bind};\n",
                            "proxy settings")
    return text


DNS_BLOCK = re.compile(
    r"    dns_sd_configs:\n      - names: \[(?P<names>[^\]]*)\]\n        type: A\n"
    r"        port: (?P<port>\d+)\n        refresh_interval: \S+\n")


def render_prometheus(args, text):
    targets = {}
    for target in args.target:
        job, _, address = target.partition("=")
        targets[job] = address
    jobs = re.findall(r"  - job_name: (\S+)\n    metrics_path: \S+\n    dns_sd_configs:", text)
    missing = [job for job in jobs if job not in targets]
    if missing:
        sys.exit(f"render: no --target for job(s) {missing}")
    for job in jobs:
        head = f"  - job_name: {job}\n"
        start = text.index(head)
        match = DNS_BLOCK.search(text, start)
        if not match:
            sys.exit(f"render: job {job}: dns_sd_configs block not in the expected shape")
        static = f"    static_configs:\n      - targets: ['{targets[job]}']\n"
        text = text[:match.start()] + static + text[match.end():]
    text = replace_once(text, "  - /etc/prometheus/alerts.yml", f"  - {args.rules}", "rule file")
    if args.interval:
        text = replace_once(text, "  scrape_interval: 15s", f"  scrape_interval: {args.interval}", "scrape interval")
        text = replace_once(text, "  scrape_timeout: 10s", f"  scrape_timeout: {args.interval}", "scrape timeout")
        text = replace_once(text, "  evaluation_interval: 15s", f"  evaluation_interval: {args.interval}", "evaluation interval")
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["nginx", "prometheus"])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--backend")
    parser.add_argument("--frontend")
    parser.add_argument("--http", type=int)
    parser.add_argument("--https", type=int)
    parser.add_argument("--ssl-dir")
    parser.add_argument("--prefix", default="/tmp")
    parser.add_argument("--proxy-bind")
    parser.add_argument("--rules")
    parser.add_argument("--target", action="append", default=[])
    parser.add_argument("--interval")
    args = parser.parse_args()
    with open(args.source) as f:
        text = f.read()
    if args.kind == "nginx":
        if not (args.backend and args.frontend and args.http):
            sys.exit("render: nginx needs --backend, --frontend and --http")
        text = render_nginx(args, text)
    else:
        if not args.rules:
            sys.exit("render: prometheus needs --rules")
        text = render_prometheus(args, text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
