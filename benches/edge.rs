//! Micro-benchmarks of the edge's per-request work: reading a chat request (model, stream,
//! required field), scanning a relayed SSE stream, and counting a request for the dashboard
//! beside the Prometheus overhead histogram it sits next to. Run with `cargo bench -p gateway`
//! (or `make bench-micro`).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway::metrics::Metrics;
use gateway::overview::{OverviewCounters, RequestOutcome};
use gateway::pipeline::sse::SseScanner;
use gateway::pipeline::{ApiKind, ParsedRequest};

/// A realistic chat request of about 1 KB: a system prompt, a few turns and sampling options.
fn chat_body() -> Bytes {
    let body = serde_json::json!({
        "model": "echo/echo-1",
        "messages": [
            {"role": "system", "content": "You are a concise assistant for an engineering team. \
                Answer in plain English, cite the file you read, and say when you are unsure \
                rather than guessing. Keep answers under two hundred words."},
            {"role": "user", "content": "Our gateway adds latency under load. Where should we \
                look first: the balancer, the key cache or the usage recorder?"},
            {"role": "assistant", "content": "Start with a profile under the same load. The \
                balancer is pure arithmetic over a snapshot; the key cache is a concurrent map; \
                the recorder is a channel send. Measure before choosing."},
            {"role": "user", "content": "We measured: p99 doubles at 64 connections. What \
                numbers would tell the three apart, and how do we collect them cheaply?"}
        ],
        "temperature": 0.2,
        "top_p": 0.95,
        "max_tokens": 256,
        "stream": false,
        "user": "bench-user-0001"
    });
    Bytes::from(serde_json::to_vec(&body).expect("a JSON body"))
}

/// The 20-event stream the mock upstream sends: deltas, a finish chunk, usage and `[DONE]`.
fn sse_events() -> Vec<Bytes> {
    let mut events: Vec<Bytes> = (0..20)
        .map(|i| {
            let event = serde_json::json!({
                "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
                "model": "echo-1",
                "choices": [{"index": 0, "delta": {"content": format!("word{i} ")},
                             "finish_reason": null}]
            });
            Bytes::from(format!("data: {event}\n\n"))
        })
        .collect();
    events.push(Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":0,\
          \"model\":\"echo-1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    ));
    events.push(Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":0,\
          \"model\":\"echo-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\
          \"completion_tokens\":20,\"total_tokens\":25}}\n\n",
    ));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

fn request_parse(c: &mut Criterion) {
    let body = chat_body();
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("parse_chat_1kb", |b| {
        b.iter(|| {
            ParsedRequest::parse(ApiKind::ChatCompletions, black_box(body.clone()))
                .expect("a valid request")
        })
    });
    group.finish();
}

fn sse_scan(c: &mut Criterion) {
    let events = sse_events();
    let bytes: usize = events.iter().map(Bytes::len).sum();
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("scan_20_events", |b| {
        b.iter(|| {
            let mut scanner = SseScanner::default();
            for event in &events {
                scanner.feed(black_box(event));
            }
            scanner.finish();
            scanner.is_complete()
        })
    });
    group.finish();
}

fn overview_record(c: &mut Criterion) {
    let counters = OverviewCounters::default();
    let metrics = Metrics::new().expect("metrics");
    let started = std::time::Instant::now();
    let mut group = c.benchmark_group("per_request_counters");
    group.bench_function("overview_record_request", |b| {
        b.iter(|| {
            counters.record_request(
                black_box(started),
                RequestOutcome {
                    latency: black_box(Duration::from_micros(1_800)),
                    overhead: Some(black_box(Duration::from_micros(90))),
                    failed: false,
                },
            )
        })
    });
    group.bench_function("prometheus_observe_overhead", |b| {
        b.iter(|| metrics.observe_overhead(black_box("chat"), black_box(Duration::from_micros(90))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = request_parse, sse_scan, overview_record
}
criterion_main!(benches);
