"""Prometheus metrics, one registry per server instance (tests can run
several servers in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported)

_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_TPS_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500)
_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "model_server_requests_total", "Requests by protocol, endpoint and outcome",
            ["protocol", "endpoint", "status"], registry=r)
        self.request_latency = Histogram(
            "model_server_request_duration_seconds", "Request duration",
            ["protocol", "endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens_generated = Counter(
            "model_server_generated_tokens_total", "Completion tokens generated",
            ["model"], registry=r)
        self.prompt_tokens = Counter(
            "model_server_prompt_tokens_total", "Prompt tokens processed",
            ["model"], registry=r)
        self.ttft = Histogram(
            "model_server_time_to_first_token_seconds",
            "Time from request start to the first generated token",
            ["model"], buckets=_TTFT_BUCKETS, registry=r)
        self.tokens_per_second = Histogram(
            "model_server_tokens_per_second", "Decode speed of one completion",
            ["model"], buckets=_TPS_BUCKETS, registry=r)
        self.active = Gauge(
            "model_server_active_generations", "Generations running or queued in the engine",
            ["model"], registry=r)
        self.cancelled = Counter(
            "model_server_cancelled_generations_total",
            "Generations stopped because the client went away", ["model"], registry=r)
        self.embedded_inputs = Counter(
            "model_server_embedding_inputs_total", "Texts embedded", ["model"], registry=r)
        self.embedding_tokens = Counter(
            "model_server_embedding_tokens_total", "Tokens fed to the embedding model",
            ["model"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
