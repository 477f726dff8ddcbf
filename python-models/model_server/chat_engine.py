"""Chat generation with llama.cpp (xllamacpp's in-process server).

``xllamacpp.Server.handle_chat_completions(body, callback)`` blocks its
calling thread and calls ``callback(chunk)`` once per generated token when
``body["stream"]`` is true; returning True from the callback stops the
generation and frees the slot. Each request therefore runs on a worker thread
and its chunks are bridged into asyncio through an ``asyncio.Queue`` fed with
``loop.call_soon_threadsafe``. When the consumer goes away (HTTP disconnect,
gRPC cancellation) the async generator is closed, a flag is set and the next
callback returns True.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional, Union

from .config import Settings
from .errors import ApiError, from_llama_error
from .metrics import Metrics
from .schemas import ChatCompletionRequest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import xllamacpp as xlc  # noqa: E402  (after OMP_WAIT_POLICY)

log = logging.getLogger(__name__)

LLAMA_SEED_MOD = 0xFFFFFFFF  # 0xFFFFFFFF itself means "random" to llama.cpp


@dataclass
class Delta:
    text: str


@dataclass
class Final:
    finish_reason: Optional[str]
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, Any] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


Event = Union[Delta, Final]


@dataclass
class GenerationRecord:
    """What happened to one generation (kept for tests and debugging)."""
    request_id: str
    chunks: int = 0
    finish_reason: Optional[str] = None
    cancelled: bool = False
    error: Optional[str] = None


class _Done:
    pass


_DONE = _Done()


class ChatEngine:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.model_id = settings.chat_model_id
        self.context_length = settings.chat_slot_ctx
        self.created = int(time.time())
        params = xlc.CommonParams()
        params.model.path = str(settings.chat_model_path)
        params.n_ctx = settings.chat_ctx_size
        params.n_parallel = settings.chat_parallel
        params.n_predict = -1
        params.cpuparams.n_threads = settings.chat_threads
        params.cpuparams_batch.n_threads = settings.chat_batch_threads
        # llama.cpp's own per-request INFO logs are very chatty: keep them for debug.
        params.verbosity = {"debug": 3, "info": 2, "warning": 2}.get(settings.log_level, 1)
        # xllamacpp also opens llama.cpp's HTTP server on a random loopback
        # port; lock it with a random key nobody knows (we call it in-process).
        params.api_keys = [secrets.token_hex(24)]
        log.info("loading chat model %s (ctx %d, %d slots, %d thread(s))",
                 settings.chat_model_path, settings.chat_ctx_size,
                 settings.chat_parallel, settings.chat_threads)
        self._server = xlc.Server(params)
        # More workers than slots: queued requests wait inside llama.cpp.
        self._executor = ThreadPoolExecutor(
            max_workers=max(4, settings.chat_parallel * 4), thread_name_prefix="llama")
        self._cond = threading.Condition()
        self._in_flight = 0
        self._ids = itertools.count(1)
        self.records: collections.deque[GenerationRecord] = collections.deque(maxlen=64)

    # ------------------------------------------------------------ state

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    def wait_idle(self, timeout: float) -> bool:
        """Block until no generation is running (True) or timeout (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._in_flight == 0, timeout)

    def wait_started(self, request_id: str, timeout: float) -> bool:
        """Block until the generation for request_id has produced a token."""
        def started() -> bool:
            return any(r.request_id == request_id and r.chunks > 0 for r in self.records)
        with self._cond:
            return self._cond.wait_for(started, timeout)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ requests

    def build_body(self, req: ChatCompletionRequest) -> dict[str, Any]:
        """Translate a validated request into llama.cpp's request JSON."""
        body: dict[str, Any] = {
            "messages": [
                {"role": m.role, "content": m.text(), **({"name": m.name} if m.name else {})}
                for m in req.messages
            ],
            "max_tokens": req.max_tokens or req.max_completion_tokens
            or self.settings.default_max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "cache_prompt": True,
        }
        for key, value in (
            ("temperature", req.temperature),
            ("top_p", req.top_p),
            ("top_k", req.top_k),
            ("min_p", req.min_p),
            ("presence_penalty", req.presence_penalty),
            ("frequency_penalty", req.frequency_penalty),
            ("repeat_penalty", req.repetition_penalty),
            ("grammar", req.grammar),
            ("json_schema", req.json_schema),
            ("response_format", req.response_format),
        ):
            if value is not None:
                body[key] = value
        if req.seed is not None:
            body["seed"] = req.seed % LLAMA_SEED_MOD
        stops = req.stop_list()
        if stops:
            body["stop"] = stops
        if req.logit_bias:
            body["logit_bias"] = [[int(k), v] for k, v in req.logit_bias.items()]
        if req.ignore_eos:
            body["ignore_eos"] = True
        return body

    async def generate(
        self, req: ChatCompletionRequest, request_id: str = ""
    ) -> AsyncIterator[Event]:
        """Yield a Delta per token, then one Final. Raises ApiError.

        Closing the generator early (``aclose()``, task cancellation) stops the
        generation at the next token."""
        body = self.build_body(req)
        record = GenerationRecord(request_id or f"gen-{next(self._ids)}")
        with self._cond:
            self.records.append(record)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def push(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # event loop closed: nobody is listening
                stop.set()

        def on_chunk(chunk: Any) -> bool:
            if stop.is_set():
                return True
            push(chunk)
            return stop.is_set()

        def run() -> None:
            try:
                if stop.is_set():  # consumer left while this waited for a worker
                    return
                result = self._server.handle_chat_completions(body, on_chunk)
                if isinstance(result, dict) and "error" in result:
                    push(result)
            except BaseException as exc:  # noqa: BLE001 - reported to the caller
                push(exc)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()
                self.metrics.active.labels(self.model_id).dec()
                push(_DONE)

        with self._cond:
            self._in_flight += 1
        self.metrics.active.labels(self.model_id).inc()
        start = time.perf_counter()
        first_at: Optional[float] = None
        finish: Optional[str] = None
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        completed = False
        try:
            loop.run_in_executor(self._executor, run)
        except BaseException:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()
            self.metrics.active.labels(self.model_id).dec()
            raise
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    record.error = repr(item)
                    raise ApiError(500, f"generation failed: {item}", "server_error")
                if not isinstance(item, dict):
                    continue
                if "error" in item:
                    record.error = str(item["error"])
                    raise from_llama_error(item["error"])
                for choice in item.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        if first_at is None:
                            first_at = time.perf_counter()
                            self.metrics.ttft.labels(self.model_id).observe(first_at - start)
                        record.chunks += 1
                        if record.chunks == 1:
                            with self._cond:
                                self._cond.notify_all()
                        yield Delta(text)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                if item.get("usage"):
                    usage = item["usage"]
                    timings = item.get("timings") or {}
            record.finish_reason = finish
            final = Final(finish, int(usage.get("prompt_tokens", 0)),
                          int(usage.get("completion_tokens", 0)), timings)
            self._observe(final, start, first_at)
            completed = True
            yield final
        finally:
            if not completed:
                stop.set()
                if record.error is None:
                    record.cancelled = True
                    self.metrics.cancelled.labels(self.model_id).inc()

    def _observe(self, final: Final, start: float, first_at: Optional[float]) -> None:
        m = self.model_id
        self.metrics.tokens_generated.labels(m).inc(final.completion_tokens)
        self.metrics.prompt_tokens.labels(m).inc(final.prompt_tokens)
        tps = final.timings.get("predicted_per_second")
        if not tps and first_at is not None and final.completion_tokens > 1:
            elapsed = time.perf_counter() - first_at
            tps = (final.completion_tokens - 1) / elapsed if elapsed > 0 else None
        if tps:
            self.metrics.tokens_per_second.labels(m).observe(float(tps))

    async def complete(self, req: ChatCompletionRequest, request_id: str = "") -> tuple[str, Final]:
        """Whole completion as (text, Final)."""
        parts: list[str] = []
        final: Optional[Final] = None
        agen = self.generate(req, request_id)
        try:
            async for ev in agen:
                if isinstance(ev, Delta):
                    parts.append(ev.text)
                else:
                    final = ev
        finally:
            await agen.aclose()
        assert final is not None
        return "".join(parts), final
