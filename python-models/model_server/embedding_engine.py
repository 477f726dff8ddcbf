"""Sentence embeddings with onnxruntime + tokenizers.

all-MiniLM-L6-v2 (int8 ONNX): WordPiece tokens truncated to 256, mean pooling
over the attention mask, L2 normalisation -> 384 floats per text. Inputs are
run in padded batches (sorted by length to keep padding small); onnxruntime
runs on a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .config import Settings
from .metrics import Metrics

log = logging.getLogger(__name__)

BATCH = 32  # texts per onnxruntime run


class EmbeddingEngine:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.settings = settings
        self.metrics = metrics
        self.model_id = settings.embedding_model_id
        self.created = int(time.time())
        self.max_tokens = settings.embedding_max_tokens
        log.info("loading embedding model %s", settings.embedding_model_path)
        tok = Tokenizer.from_file(str(settings.embedding_tokenizer_path))
        tok.enable_truncation(max_length=self.max_tokens)
        tok.no_padding()
        self._tokenizer = tok
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = settings.embedding_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(settings.embedding_model_path), sess_options=opts,
            providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._lock = threading.Lock()  # one onnxruntime run at a time
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")
        self.dimension = int(self._encode(["dimension probe"])[0][0].shape[0])

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run_batch(self, encodings: list) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        with self._lock:
            hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def _encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Return (vectors in input order, total tokens)."""
        encodings = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        chunks: list[tuple[list[int], np.ndarray]] = []
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            chunks.append((idx, self._run_batch([encodings[i] for i in idx])))
        dim = chunks[0][1].shape[1]
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for idx, vecs in chunks:
            out[idx] = vecs
        tokens = sum(len(e.ids) for e in encodings)
        return out, tokens

    def embed_sync(self, texts: list[str]) -> tuple[np.ndarray, int]:
        vectors, tokens = self._encode(texts)
        self.metrics.embedded_inputs.labels(self.model_id).inc(len(texts))
        self.metrics.embedding_tokens.labels(self.model_id).inc(tokens)
        return vectors, tokens

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_sync, texts)
