#!/usr/bin/env python3
"""Turns the raw figures of one bench/run.sh run into bench/results/latest.{md,json}.

Usage: report.py RAW_DIR RESULTS_DIR. Standard library only. Prints the Markdown on stdout.
"""

import json
import os
import re
import sys

TARGETS = ["direct", "nginx", "floor", "gateway-bare", "gateway-full"]
NOTE = (
    "Figures are only comparable within one run: direct, nginx and the gateway ran back to "
    "back on the same machine, with wrk and the mock upstream sharing its cores. Compare "
    "ratios and differences, not absolute numbers across runs or machines."
)


def load_json(path):
    with open(path) as handle:
        return json.load(handle)


def wrk_run(raw, run):
    """The BENCHJSON line the Lua `done` hook printed, plus the CPU figures run.sh recorded."""
    with open(os.path.join(raw, f"wrk-{run}.txt")) as handle:
        text = handle.read()
    match = re.search(r"^BENCHJSON (.*)$", text, re.MULTILINE)
    if not match:
        raise SystemExit(f"no wrk summary for {run}:\n{text}")
    result = json.loads(match.group(1))
    cpu = load_json(os.path.join(raw, f"cpu-{run}.json"))
    seconds = result["duration_us"] / 1e6
    requests = result["requests"]
    cpu_seconds = cpu["cpu_ticks"] / cpu["clk_tck"]
    return {
        "requests": requests,
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "errors": sum(result["errors"].values()),
        "latency_us": result["latency_us"],
        "cpu_seconds": round(cpu_seconds, 2),
        "cpu_seconds_per_1k": round(cpu_seconds / requests * 1000, 4) if requests else None,
    }


def wrk_result(raw, name, concurrency, rounds):
    """The median round by RPS (all of its figures), with every round's RPS beside it."""
    runs = [wrk_run(raw, f"{name}-c{concurrency}-r{r}") for r in range(1, rounds + 1)]
    ranked = sorted(runs, key=lambda run: run["rps"])
    median = dict(ranked[(len(ranked) - 1) // 2])
    median["rounds_rps"] = [run["rps"] for run in runs]
    median["errors"] = sum(run["errors"] for run in runs)
    return median


def parse_histogram(path, name="gateway_overhead_seconds"):
    """Cumulative buckets (le -> count), sum and count, summed over every label set."""
    buckets, total, count = {}, 0.0, 0.0
    pattern = re.compile(r"^" + name + r"_(bucket|sum|count)(\{[^}]*\})?\s+(\S+)$")
    with open(path) as handle:
        for line in handle:
            match = pattern.match(line.strip())
            if not match:
                continue
            kind, labels, value = match.group(1), match.group(2) or "", float(match.group(3))
            if kind == "bucket":
                le = re.search(r'le="([^"]+)"', labels).group(1)
                bound = float("inf") if le == "+Inf" else float(le)
                buckets[bound] = buckets.get(bound, 0.0) + value
            elif kind == "sum":
                total += value
            else:
                count += value
    return buckets, total, count


def histogram_quantile(quantile, buckets):
    """Prometheus-style estimate: linear interpolation inside the bucket holding the rank."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = quantile * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def internal_overhead(raw, concurrency, rounds):
    """The histogram's growth over the full gateway's runs at this concurrency, all rounds."""
    buckets, total, count = {}, 0.0, 0.0
    for r in range(1, rounds + 1):
        before = os.path.join(raw, f"metrics-gateway-full-c{concurrency}-r{r}-before.txt")
        after = os.path.join(raw, f"metrics-gateway-full-c{concurrency}-r{r}-after.txt")
        if not (os.path.exists(before) and os.path.exists(after)):
            return None
        b_buckets, b_sum, b_count = parse_histogram(before)
        a_buckets, a_sum, a_count = parse_histogram(after)
        for le in a_buckets:
            buckets[le] = buckets.get(le, 0.0) + a_buckets[le] - b_buckets.get(le, 0.0)
        total += a_sum - b_sum
        count += a_count - b_count
    if count <= 0:
        return None
    micros = lambda v: None if v is None else round(v * 1e6, 1)  # noqa: E731
    return {
        "observations": int(count),
        "mean_us": micros(total / count),
        "p50_us_approx": micros(histogram_quantile(0.50, buckets)),
        "p99_us_approx": micros(histogram_quantile(0.99, buckets)),
    }


def fmt(value, digits=0):
    if value is None:
        return "–"
    if isinstance(value, float) and digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def signed(value):
    return "–" if value is None else f"{value:+,.0f}"


def build(raw):
    meta = load_json(os.path.join(raw, "meta.json"))
    levels = meta["concurrency"]
    rounds = meta.get("rounds", 1)
    data = {"meta": meta, "note": NOTE, "non_streaming": {}, "streaming": {}}
    for name in TARGETS:
        data["non_streaming"][name] = {}
        for c in levels:
            data["non_streaming"][name][str(c)] = wrk_result(raw, name, c, rounds)
    for name in TARGETS:
        direct = data["non_streaming"]["direct"]
        for c in levels:
            entry = data["non_streaming"][name][str(c)]
            base = direct[str(c)]["latency_us"]
            entry["overhead_us"] = {
                "p50": entry["latency_us"]["p50"] - base["p50"],
                "p99": entry["latency_us"]["p99"] - base["p99"],
            }
        stream = load_json(os.path.join(raw, f"stream-{name}.json"))
        base = load_json(os.path.join(raw, "stream-direct.json"))
        if stream.get("ttfb_p99_us") is not None and base.get("ttfb_p99_us") is not None:
            stream["ttfb_overhead_us"] = {
                "p50": round(stream["ttfb_p50_us"] - base["ttfb_p50_us"], 1),
                "p99": round(stream["ttfb_p99_us"] - base["ttfb_p99_us"], 1),
            }
        data["streaming"][name] = stream
    data["gateway_overhead_histogram"] = {
        str(c): internal_overhead(raw, c, rounds) for c in levels
    }
    data["peak_rss_kb_non_streaming"] = load_json(os.path.join(raw, "peak-rss-kb.json"))
    gateway = load_json(os.path.join(raw, "open-streams-gateway.json"))
    client = load_json(os.path.join(raw, "open-streams-client.json"))
    gateway["cpu_seconds"] = round(gateway["cpu_ticks"] / gateway["clk_tck"], 2)
    data["open_streams"] = {"gateway": gateway, "client": client}
    data["budgets"] = budgets(data, levels)
    data["floor_comparison"] = floor_comparison(data, levels)
    return data


def floor_comparison(data, levels):
    """Throughput against nginx's and CPU per request against the floor's, at the top level:
    how much of the gap to nginx is the framework (floor) and how much the gateway's own work."""
    top = str(max(levels))
    ns = data["non_streaming"]
    nginx_rps = ns["nginx"][top]["rps"]
    floor_cpu = ns["floor"][top]["cpu_seconds_per_1k"]
    rows = []
    for name in ["nginx", "floor", "gateway-bare", "gateway-full"]:
        entry = ns[name][top]
        cpu = entry["cpu_seconds_per_1k"]
        rows.append({
            "target": name,
            "rps_vs_nginx": round(entry["rps"] / nginx_rps, 3) if nginx_rps else None,
            "cpu_us_per_request": None if cpu is None else round(cpu * 1000, 1),
            "cpu_us_over_floor": None if cpu is None or floor_cpu is None
            else round((cpu - floor_cpu) * 1000, 1),
        })
    return {"concurrency": int(top), "rows": rows}


def budgets(data, levels):
    ns = data["non_streaming"]
    top, low = str(max(levels)), str(min(levels))
    full, nginx = ns["gateway-full"], ns["nginx"]
    lines = []

    def line(name, ok, detail):
        lines.append({"budget": name, "pass": bool(ok), "detail": detail})

    ratio = full[top]["rps"] / nginx[top]["rps"] if nginx[top]["rps"] else 0.0
    line(
        f"full gateway throughput at c={top} >= 90% of nginx",
        ratio >= 0.9,
        f"{full[top]['rps']:,.0f} vs {nginx[top]['rps']:,.0f} rps = {ratio:.0%}",
    )
    g_add, n_add = full[low]["overhead_us"]["p50"], nginx[low]["overhead_us"]["p50"]
    line(
        f"full gateway added p50 at c={low} <= nginx added p50 + 100 us",
        g_add <= n_add + 100,
        f"{signed(g_add)} us vs nginx {signed(n_add)} us (limit {signed(n_add + 100)} us)",
    )
    g99, n99 = full[top]["latency_us"]["p99"], nginx[top]["latency_us"]["p99"]
    line(
        f"full gateway p99 at c={top} <= 1.5x nginx p99",
        n99 > 0 and g99 <= 1.5 * n99,
        f"{g99:,.0f} us vs nginx {n99:,.0f} us = {g99 / n99 if n99 else 0:.2f}x",
    )
    stream = data["streaming"]["gateway-full"].get("ttfb_overhead_us")
    line(
        "streaming TTFB overhead (full gateway) <= 1 ms at p99",
        stream is not None and stream["p99"] <= 1000,
        "no data" if stream is None else f"{signed(stream['p99'])} us at p99",
    )
    open_streams = data["open_streams"]
    peak_mb = open_streams["gateway"]["peak_rss_kb"] / 1024
    streams, ok = open_streams["gateway"]["streams"], open_streams["client"]["ok"]
    line(
        f"{streams:,} concurrent streams within 150 MB RSS",
        peak_mb <= 150 and ok == streams,
        f"peak {peak_mb:.1f} MB, {ok:,}/{streams:,} streams completed",
    )
    return lines


def markdown(data):
    meta = data["meta"]
    levels = [str(c) for c in meta["concurrency"]]
    out = ["# Gateway overhead benchmark", ""]
    out.append(f"> {data['note']}")
    out.append("")
    out.append(
        f"Run {meta['date']} on {meta['host']}, {meta['cores']} cores, commit {meta['commit']}; "
        f"wrk {meta['wrk']} (1 thread, {meta['duration_s']} s per run, "
        f"{meta.get('rounds', 1)} interleaved rounds, median round shown), nginx {meta['nginx']} "
        f"({meta['nginx_workers']} worker), gateway {meta['gateway_workers']} worker(s), mock "
        f"upstream {meta['mock_workers']} workers. Request: `POST /v1/chat/completions`, "
        "non-streaming, ~80-byte body. *floor* = actix-web in front of hyper's pooled client "
        "and nothing else (bench/floor-proxy: the framework's own cost); *bare* = the gateway "
        "with no auth, no limits, no metrics (usage is still recorded); *full* = API key, "
        "in-process rate limits (ceilings above the load), usage recording, Prometheus "
        "metrics. Both gateways at the default log level."
    )
    out += ["", "## Non-streaming", ""]
    out.append(
        "| target | c | RPS | p50 µs | p90 µs | p99 µs | +p50 µs | +p99 µs | CPU s / 1k req | errors "
        "| RPS by round |"
    )
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in levels:
        for name in TARGETS:
            e = data["non_streaming"][name][c]
            lat = e["latency_us"]
            added = e["overhead_us"]
            out.append(
                f"| {name} | {c} | {fmt(e['rps'])} | {fmt(lat['p50'])} | {fmt(lat['p90'])} | "
                f"{fmt(lat['p99'])} | {signed(added['p50']) if name != 'direct' else '–'} | "
                f"{signed(added['p99']) if name != 'direct' else '–'} | "
                f"{fmt(e['cpu_seconds_per_1k'], 3)} | {e['errors']} | "
                f"{' / '.join(fmt(v) for v in e['rounds_rps'])} |"
            )
    out.append("")
    out.append(
        "Each row is the target's median round by RPS; errors are summed over all rounds. "
        "+p50/+p99: target minus direct at the same concurrency (added latency). CPU s / 1k req: "
        "user+system CPU of the proxy process (the mock's for direct, nginx's worker, the "
        "floor proxy, the gateway) per 1,000 requests."
    )
    fc = data["floor_comparison"]
    out += ["", f"### Framework or gateway? (c={fc['concurrency']})", ""]
    out.append("| target | RPS vs nginx | CPU µs / request | CPU µs over the floor |")
    out.append("| --- | ---: | ---: | ---: |")
    for row in fc["rows"]:
        ratio = row["rps_vs_nginx"]
        out.append(
            f"| {row['target']} | {'–' if ratio is None else f'{ratio:.0%}'} | "
            f"{fmt(row['cpu_us_per_request'], 1)} | {signed(row['cpu_us_over_floor'])} |"
        )
    out.append("")
    out.append(
        "The floor is what actix-web and hyper cost on their own; what the gateway spends "
        "above it is its own work per request (request ids, parsing, routing, failover, usage "
        "recording, and in *full* authentication, limits and metrics)."
    )
    rss = data["peak_rss_kb_non_streaming"]
    out.append(
        f"Peak RSS after these runs: gateway-bare {rss['gateway-bare'] / 1024:.1f} MB, "
        f"gateway-full {rss['gateway-full'] / 1024:.1f} MB."
    )
    out += ["", "### The gateway's own view: `gateway_overhead_seconds` (full set-up)", ""]
    out.append(
        "| c | observations | mean µs | ~p50 µs | ~p99 µs | external +p50 µs | external +p99 µs |"
    )
    out.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in levels:
        h = data["gateway_overhead_histogram"][c]
        ext = data["non_streaming"]["gateway-full"][c]["overhead_us"]
        if h is None:
            out.append(f"| {c} | – | – | – | – | {signed(ext['p50'])} | {signed(ext['p99'])} |")
            continue
        out.append(
            f"| {c} | {h['observations']:,} | {fmt(h['mean_us'], 1)} | {fmt(h['p50_us_approx'], 1)} | "
            f"{fmt(h['p99_us_approx'], 1)} | {signed(ext['p50'])} | {signed(ext['p99'])} |"
        )
    out.append("")
    out.append(
        "The histogram measures the handler from authentication to the response object, minus "
        "upstream time; it excludes middleware, socket I/O and queueing, so it is a lower bound "
        "of the external figure. Percentiles are interpolated within buckets (10, 25, 50, 100, "
        "250, 500 µs, 1 ms, …)."
    )
    out += ["", "## Streaming (20 chunks, sequential requests, fresh connection each)", ""]
    out.append("| target | requests ok | TTFB p50 µs | TTFB p99 µs | +TTFB p50 | +TTFB p99 | last chunk p50 µs | last chunk p99 µs |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in TARGETS:
        s = data["streaming"][name]
        added = s.get("ttfb_overhead_us") or {}
        show_added = name != "direct"
        out.append(
            f"| {name} | {s['ok']}/{s['requests']} | {fmt(s['ttfb_p50_us'])} | {fmt(s['ttfb_p99_us'])} | "
            f"{signed(added.get('p50')) if show_added else '–'} | "
            f"{signed(added.get('p99')) if show_added else '–'} | "
            f"{fmt(s['total_p50_us'])} | {fmt(s['total_p99_us'])} |"
        )
    out.append("")
    out.append(
        "TTFB: request sent → first byte of the first `data:` event. Last chunk: request sent → "
        "`data: [DONE]`."
    )
    o = data["open_streams"]
    g, cl = o["gateway"], o["client"]
    out += ["", f"## {g['streams']:,} concurrent open streams (gateway-full, 20 chunks × 200 ms)", ""]
    out.append("| streams ok | errors | RSS idle MB | peak RSS MB | gateway CPU s | TTFB p50 ms | TTFB p99 ms | duration p50 s | duration p99 s |")
    out.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    ms = lambda v: "–" if v is None else f"{v / 1000:,.1f}"  # noqa: E731
    sec = lambda v: "–" if v is None else f"{v / 1e6:,.2f}"  # noqa: E731
    out.append(
        f"| {cl['ok']:,} | {cl['errors']} | {g['idle_rss_kb'] / 1024:.1f} | {g['peak_rss_kb'] / 1024:.1f} | "
        f"{g['cpu_seconds']:.2f} | {ms(cl['ttfb_p50_us'])} | {ms(cl['ttfb_p99_us'])} | "
        f"{sec(cl['total_p50_us'])} | {sec(cl['total_p99_us'])} |"
    )
    if cl.get("error_samples"):
        out.append("")
        out.append("Errors seen: " + ", ".join(f"`{e}`" for e in cl["error_samples"]))
    out.append("")
    out.append(
        "Peak RSS is VmHWM of a freshly started gateway after this scenario alone; CPU is "
        "utime+stime while the streams ran."
    )
    out += ["", "## Budgets (issue 6, ratios within this run)", ""]
    for b in data["budgets"]:
        out.append(f"- **{'PASS' if b['pass'] else 'FAIL'}** {b['budget']}: {b['detail']}")
    out.append("")
    return "\n".join(out)


def main():
    raw, results = sys.argv[1], sys.argv[2]
    data = build(raw)
    text = markdown(data)
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "latest.json"), "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    with open(os.path.join(results, "latest.md"), "w") as handle:
        handle.write(text)
    ignore = os.path.join(results, ".gitignore")
    if not os.path.exists(ignore):
        with open(ignore, "w") as handle:
            handle.write("*\n!.gitignore\n")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
