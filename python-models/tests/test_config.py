"""Model resolution from the environment (no network: downloads are faked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_server import config
from model_server.config import ConfigError, load_settings


def _no_download(repo, filename, endpoint):
    raise AssertionError(f"unexpected download of {repo}/{filename}")


def test_packaged_models_are_found():
    s = load_settings({}, downloader=_no_download)
    assert s.chat_model_path.name.endswith(".gguf") and s.chat_model_path.is_file()
    assert s.embedding_model_path.suffix == ".onnx" and s.embedding_model_path.is_file()
    assert s.embedding_tokenizer_path.name == "tokenizer.json"
    assert (s.host, s.port, s.grpc_port) == ("0.0.0.0", 5000, 50051)


def test_local_paths_win_over_repos(tmp_path: Path):
    files = {}
    for name in ("m.gguf", "e.onnx", "tokenizer.json"):
        files[name] = tmp_path / name
        files[name].write_bytes(b"x")
    env = {
        "CHAT_MODEL_PATH": str(files["m.gguf"]), "CHAT_MODEL_REPO": "org/chat",
        "CHAT_MODEL_FILE": "c.gguf",
        "EMBEDDING_MODEL_PATH": str(files["e.onnx"]), "EMBEDDING_MODEL_REPO": "org/emb",
        "EMBEDDING_TOKENIZER_PATH": str(files["tokenizer.json"]),
        "HF_ENDPOINT": "http://mirror.invalid",
    }
    s = load_settings(env, downloader=_no_download)
    assert s.chat_model_path == files["m.gguf"]
    assert s.embedding_model_path == files["e.onnx"]
    assert s.embedding_tokenizer_path == files["tokenizer.json"]


def test_repo_download_honours_hf_endpoint(tmp_path: Path):
    calls = []

    def fake(repo, filename, endpoint):
        calls.append((repo, filename, endpoint))
        p = tmp_path / filename.replace("/", "_")
        p.write_bytes(b"x")
        return p

    env = {"CHAT_MODEL_REPO": "org/chat-gguf", "CHAT_MODEL_FILE": "model.Q4.gguf",
           "EMBEDDING_MODEL_REPO": "org/minilm", "HF_ENDPOINT": "https://hf-mirror.example"}
    s = load_settings(env, downloader=fake)
    assert ("org/chat-gguf", "model.Q4.gguf", "https://hf-mirror.example") in calls
    assert ("org/minilm", "onnx/model_quint8_avx2.onnx", "https://hf-mirror.example") in calls
    assert ("org/minilm", "tokenizer.json", "https://hf-mirror.example") in calls
    assert s.chat_model_path.name == "model.Q4.gguf"


def test_hf_download_passes_endpoint(monkeypatch, tmp_path):
    import huggingface_hub

    seen = {}

    def fake_hf_hub_download(**kw):
        seen.update(kw)
        return str(tmp_path / "f")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    assert config.hf_download("a/b", "f.gguf", "https://mirror") == tmp_path / "f"
    assert seen == {"repo_id": "a/b", "filename": "f.gguf", "endpoint": "https://mirror"}


def test_repo_without_file_is_an_error():
    with pytest.raises(ConfigError, match="CHAT_MODEL_FILE"):
        load_settings({"CHAT_MODEL_REPO": "org/chat"}, downloader=_no_download)


def test_missing_local_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="CHAT_MODEL_PATH"):
        load_settings({"CHAT_MODEL_PATH": str(tmp_path / "nope.gguf")}, downloader=_no_download)


@pytest.mark.parametrize("var,value", [("PORT", "abc"), ("CHAT_PARALLEL", "0"),
                                       ("GRPC_PORT", "-1")])
def test_bad_numbers(var, value):
    with pytest.raises(ConfigError, match=var):
        load_settings({var: value}, downloader=_no_download)


def test_numbers_and_ids():
    s = load_settings({"PORT": "8080", "GRPC_PORT": "9090", "CHAT_PARALLEL": "4",
                       "CHAT_CTX_SIZE": "4096", "CHAT_MODEL_ID": "tiny"},
                      downloader=_no_download)
    assert (s.port, s.grpc_port, s.chat_model_id, s.chat_slot_ctx) == (8080, 9090, "tiny", 1024)
