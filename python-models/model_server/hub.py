"""The loaded models, shared by the HTTP and gRPC front ends."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional

from .chat_engine import ChatEngine
from .config import Settings
from .embedding_engine import EmbeddingEngine
from .errors import ApiError, model_not_found
from .metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class ModelCard:
    id: str
    kind: str  # "chat" | "embedding"
    owned_by: str
    context_length: int
    created: int
    embedding_dimensions: int = 0


class ModelHub:
    def __init__(self, settings: Settings, metrics: Optional[Metrics] = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.chat: Optional[ChatEngine] = None
        self.embedding: Optional[EmbeddingEngine] = None

    def load(self) -> "ModelHub":
        t0 = time.perf_counter()
        self.embedding = EmbeddingEngine(self.settings, self.metrics)
        self.chat = ChatEngine(self.settings, self.metrics)
        log.info("models loaded in %.1fs", time.perf_counter() - t0)
        return self

    @property
    def ready(self) -> bool:
        return self.chat is not None and self.embedding is not None

    def close(self) -> None:
        for engine in (self.chat, self.embedding):
            if engine is not None:
                engine.close()

    def cards(self) -> list[ModelCard]:
        out: list[ModelCard] = []
        if self.chat is not None:
            out.append(ModelCard(self.chat.model_id, "chat", self.settings.owned_by,
                                 self.chat.context_length, self.chat.created))
        if self.embedding is not None:
            out.append(ModelCard(self.embedding.model_id, "embedding", self.settings.owned_by,
                                 self.embedding.max_tokens, self.embedding.created,
                                 self.embedding.dimension))
        return out

    def _require_ready(self) -> None:
        if not self.ready:
            raise ApiError(503, "models are still loading", "server_unavailable", "not_ready")

    def chat_engine(self, model: str) -> ChatEngine:
        self._require_ready()
        assert self.chat is not None
        if model == self.chat.model_id:
            return self.chat
        if self.embedding is not None and model == self.embedding.model_id:
            raise ApiError(400, f"The model '{model}' is an embedding model and cannot chat",
                           "invalid_request_error", "model_not_supported", "model")
        raise model_not_found(model)

    def embedding_engine(self, model: str) -> EmbeddingEngine:
        self._require_ready()
        assert self.embedding is not None
        if model == self.embedding.model_id:
            return self.embedding
        if self.chat is not None and model == self.chat.model_id:
            raise ApiError(400, f"The model '{model}' is a chat model, not an embedding model",
                           "invalid_request_error", "model_not_supported", "model")
        raise model_not_found(model)
