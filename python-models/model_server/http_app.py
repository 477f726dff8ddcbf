"""OpenAI-compatible HTTP API (FastAPI)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .chat_engine import Delta, Final
from .errors import ApiError, from_validation_errors
from .hub import ModelHub
from .metrics import CONTENT_TYPE_LATEST
from .schemas import ChatCompletionRequest, EmbeddingRequest, parse

log = logging.getLogger(__name__)


def _error_response(err: ApiError, request_id: Optional[str] = None) -> JSONResponse:
    headers = {"x-request-id": request_id} if request_id else None
    return JSONResponse(err.to_dict(), status_code=err.status, headers=headers)


class _ClosingStreamingResponse(StreamingResponse):
    """Closes the body generator when the client disconnects, so generation
    stops right away instead of whenever the generator is garbage collected."""

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[override]
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}", "invalid_request_error",
                       "invalid_json") from None


def _request_id(request: Request) -> str:
    return request.headers.get("x-request-id") or uuid.uuid4().hex


def create_app(hub: ModelHub) -> FastAPI:
    app = FastAPI(title="aigateway model server", version="0.1.0")
    app.state.hub = hub
    metrics = hub.metrics

    def count(endpoint: str, status: int, started: float) -> None:
        metrics.requests.labels("http", endpoint, str(status)).inc()
        metrics.request_latency.labels("http", endpoint).observe(time.perf_counter() - started)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return _error_response(from_validation_errors(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        etype = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error_response(ApiError(exc.status_code, str(exc.detail), etype,
                                        str(exc.status_code)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error")
        return _error_response(ApiError(500, "internal server error", "server_error"))

    # /ready is the same question (are the models loaded?) under the name operators' health
    # checks (`make health-check`, Kubernetes readiness probes) ask it by.
    @app.get("/health")
    @app.get("/ready")
    async def health():
        if not hub.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ok", "models": [c.id for c in hub.cards()]}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def _model_json(card) -> dict[str, Any]:
        out = {"id": card.id, "object": "model", "created": card.created,
               "owned_by": card.owned_by, "kind": card.kind,
               "context_length": card.context_length}
        if card.embedding_dimensions:
            out["embedding_dimensions"] = card.embedding_dimensions
        return out

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [_model_json(c) for c in hub.cards()]}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str):
        for card in hub.cards():
            if card.id == model_id:
                return _model_json(card)
        raise ApiError(404, f"The model '{model_id}' does not exist", "invalid_request_error",
                       "model_not_found", "model")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        started = time.perf_counter()
        try:
            req: EmbeddingRequest = parse(EmbeddingRequest, await _json_body(request))
            engine = hub.embedding_engine(req.model)
            texts = req.inputs()
            if len(texts) > hub.settings.embedding_max_batch:
                raise ApiError(400, f"At most {hub.settings.embedding_max_batch} inputs per "
                               "request", "invalid_request_error", "too_many_inputs", "input")
            if req.dimensions is not None and req.dimensions != engine.dimension:
                raise ApiError(400, f"This model only supports dimensions={engine.dimension}",
                               "invalid_request_error", "invalid_value", "dimensions")
            vectors, tokens = await engine.embed(texts)
        except ApiError as err:
            count("embeddings", err.status, started)
            raise
        data = []
        for i, vec in enumerate(vectors):
            emb: Any = (base64.b64encode(vec.astype("<f4").tobytes()).decode()
                        if req.encoding_format == "base64" else vec.tolist())
            data.append({"object": "embedding", "index": i, "embedding": emb})
        count("embeddings", 200, started)
        return {"object": "list", "data": data, "model": engine.model_id,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        started = time.perf_counter()
        rid = _request_id(request)
        try:
            req: ChatCompletionRequest = parse(ChatCompletionRequest, await _json_body(request))
            engine = hub.chat_engine(req.model)
        except ApiError as err:
            count("chat", err.status, started)
            return _error_response(err, rid)
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        model = engine.model_id
        agen = engine.generate(req, rid)

        if not req.stream:
            try:
                text, final = await _complete_unless_disconnected(request, agen)
            except ApiError as err:
                count("chat", err.status, started)
                return _error_response(err, rid)
            if final is None:  # client went away
                count("chat", 499, started)
                return Response(status_code=499)
            count("chat", 200, started)
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": None, "finish_reason": final.finish_reason}],
                "usage": {"prompt_tokens": final.prompt_tokens,
                          "completion_tokens": final.completion_tokens,
                          "total_tokens": final.total_tokens},
            }, headers={"x-request-id": rid})

        # Streaming: wait for the first event so that errors (e.g. a prompt
        # longer than the context) still get a proper 4xx status.
        try:
            first = await agen.__anext__()
        except ApiError as err:
            await agen.aclose()
            count("chat", err.status, started)
            return _error_response(err, rid)

        def chunk(delta: dict[str, Any], finish: Optional[str] = None) -> bytes:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                 "finish_reason": finish}]}
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()

        async def sse() -> AsyncIterator[bytes]:
            status = 499
            try:
                yield chunk({"role": "assistant", "content": ""})
                ev = first
                while True:
                    if isinstance(ev, Delta):
                        yield chunk({"content": ev.text})
                    elif isinstance(ev, Final):
                        yield chunk({}, ev.finish_reason or "stop")
                        if req.include_usage():
                            usage = {"id": cid, "object": "chat.completion.chunk",
                                     "created": created, "model": model, "choices": [],
                                     "usage": {"prompt_tokens": ev.prompt_tokens,
                                               "completion_tokens": ev.completion_tokens,
                                               "total_tokens": ev.total_tokens}}
                            yield f"data: {json.dumps(usage)}\n\n".encode()
                        break
                    ev = await agen.__anext__()
                yield b"data: [DONE]\n\n"
                status = 200
            except ApiError as err:
                status = err.status
                yield f"data: {json.dumps(err.to_dict())}\n\n".encode()
            finally:
                await agen.aclose()
                count("chat", status, started)

        return _ClosingStreamingResponse(
            sse(), media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-request-id": rid})

    return app


async def _complete_unless_disconnected(request: Request, agen) -> tuple[str, Optional[Final]]:
    """Collect a whole completion, stopping early if the client disconnects."""

    async def collect() -> tuple[str, Optional[Final]]:
        parts: list[str] = []
        final: Optional[Final] = None
        async for ev in agen:
            if isinstance(ev, Delta):
                parts.append(ev.text)
            else:
                final = ev
        return "".join(parts), final

    async def disconnected() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    work = asyncio.ensure_future(collect())
    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()  # raises CancelledError inside the generator: it stops
            await asyncio.gather(work, return_exceptions=True)
        await agen.aclose()
    if work.cancelled():
        return "", None
    return work.result()
