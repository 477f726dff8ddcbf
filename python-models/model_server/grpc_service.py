"""gRPC front end: aigateway.model.v1.ModelService + grpc.health.v1.Health."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .chat_engine import Delta
from .errors import ApiError
from .generated import model_pb2 as pb
from .generated import model_pb2_grpc as pb_grpc
from .hub import ModelHub
from .schemas import ChatCompletionRequest, EmbeddingRequest, parse

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ModelService"].full_name

_FINISH = {
    "stop": pb.FINISH_REASON_STOP,
    "length": pb.FINISH_REASON_LENGTH,
    "content_filter": pb.FINISH_REASON_CONTENT_FILTER,
    "tool_calls": pb.FINISH_REASON_TOOL_CALLS,
}
_SAMPLING = ("temperature", "top_p", "top_k", "seed", "presence_penalty",
             "frequency_penalty", "repetition_penalty", "min_p")


def chat_request_to_dict(request: pb.ChatRequest) -> dict[str, Any]:
    """Protobuf ChatRequest -> the OpenAI-shaped dict that schemas validate."""
    data: dict[str, Any] = {
        "model": request.model,
        "messages": [
            {"role": m.role, "content": m.content, **({"name": m.name} if m.HasField("name") else {})}
            for m in request.messages
        ],
    }
    if request.HasField("sampling"):
        for name in _SAMPLING:
            if request.sampling.HasField(name):
                data[name] = getattr(request.sampling, name)
    if request.HasField("max_tokens"):
        data["max_tokens"] = request.max_tokens
    if request.stop:
        data["stop"] = list(request.stop)
    if request.logit_bias:
        data["logit_bias"] = {str(k): v for k, v in request.logit_bias.items()}
    if request.ignore_eos:
        data["ignore_eos"] = True
    if request.HasField("grammar"):
        data["grammar"] = request.grammar
    if request.HasField("json_schema"):
        try:
            data["json_schema"] = json.loads(request.json_schema)
        except ValueError as exc:
            raise ApiError(400, f"json_schema is not valid JSON: {exc}",
                           "invalid_request_error", "invalid_value", "json_schema") from None
    if request.user:
        data["user"] = request.user
    return data


class ModelService(pb_grpc.ModelServiceServicer):
    def __init__(self, hub: ModelHub) -> None:
        self.hub = hub

    def _count(self, method: str, code: grpc.StatusCode, started: float) -> None:
        m = self.hub.metrics
        m.requests.labels("grpc", method, code.name).inc()
        m.request_latency.labels("grpc", method).observe(time.perf_counter() - started)

    async def _abort(self, context, method: str, err: ApiError, started: float):
        self._count(method, err.grpc_code, started)
        await context.abort(err.grpc_code, err.message)

    async def Chat(self, request, context):
        started = time.perf_counter()
        try:
            req = parse(ChatCompletionRequest, chat_request_to_dict(request))
            engine = self.hub.chat_engine(req.model)
        except ApiError as err:
            await self._abort(context, "Chat", err, started)
            return
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        rid = request.request_id
        agen = engine.generate(req, rid)
        # context.write() instead of an async-generator handler: a client
        # cancellation then raises CancelledError right here, and the finally
        # block closes the generation at once.
        code = grpc.StatusCode.CANCELLED
        try:
            async for ev in agen:
                if isinstance(ev, Delta):
                    await context.write(pb.ChatChunk(
                        id=cid, model=engine.model_id, delta=ev.text, request_id=rid,
                        created=created))
                else:
                    await context.write(pb.ChatChunk(
                        id=cid, model=engine.model_id, delta="", request_id=rid,
                        created=created,
                        finish_reason=_FINISH.get(ev.finish_reason or "stop",
                                                  pb.FINISH_REASON_UNSPECIFIED),
                        usage=pb.Usage(prompt_tokens=ev.prompt_tokens,
                                       completion_tokens=ev.completion_tokens,
                                       total_tokens=ev.total_tokens)))
                    code = grpc.StatusCode.OK
        except ApiError as err:
            code = None
            await agen.aclose()
            await self._abort(context, "Chat", err, started)
        finally:
            await agen.aclose()
            if code is not None:
                self._count("Chat", code, started)

    async def Embed(self, request, context):
        started = time.perf_counter()
        try:
            req = parse(EmbeddingRequest, {"model": request.model, "input": list(request.input)})
            engine = self.hub.embedding_engine(req.model)
            texts = req.inputs()
            if len(texts) > self.hub.settings.embedding_max_batch:
                raise ApiError(400, f"At most {self.hub.settings.embedding_max_batch} inputs "
                               "per request", "invalid_request_error", "too_many_inputs")
            vectors, tokens = await engine.embed(texts)
        except ApiError as err:
            await self._abort(context, "Embed", err, started)
            return pb.EmbedResponse()
        self._count("Embed", grpc.StatusCode.OK, started)
        return pb.EmbedResponse(
            model=engine.model_id,
            data=[pb.Embedding(index=i, values=v.tolist()) for i, v in enumerate(vectors)],
            usage=pb.Usage(prompt_tokens=tokens, total_tokens=tokens))

    async def ListModels(self, request, context):
        kinds = {"chat": pb.MODEL_KIND_CHAT, "embedding": pb.MODEL_KIND_EMBEDDING}
        self._count("ListModels", grpc.StatusCode.OK, time.perf_counter())
        return pb.ListModelsResponse(models=[
            pb.ModelInfo(id=c.id, kind=kinds[c.kind], owned_by=c.owned_by,
                         context_length=c.context_length,
                         embedding_dimensions=c.embedding_dimensions, created=c.created)
            for c in self.hub.cards()
        ])


async def set_health(servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (health_pb2.HealthCheckResponse.SERVING if serving
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    for name in ("", SERVICE_NAME):
        await servicer.set(name, status)


async def start_grpc_server(
    hub: ModelHub, host: str, port: int
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Start the gRPC server; returns it, the bound port (port 0 = any) and
    the health servicer (NOT_SERVING until the models are loaded)."""
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", 32 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ])
    pb_grpc.add_ModelServiceServicer_to_server(ModelService(hub), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bind_host = "[::]" if host in ("", "::") else host
    bound = server.add_insecure_port(f"{bind_host}:{port}")
    if bound == 0:
        raise RuntimeError(f"cannot bind gRPC to {bind_host}:{port}")
    await server.start()
    await set_health(health_servicer, hub.ready)
    log.info("gRPC listening on %s:%d", bind_host, bound)
    return server, bound, health_servicer
