"""Model server for the AI gateway: chat (llama.cpp) and embeddings
(onnxruntime) over an OpenAI-compatible HTTP API and gRPC."""

__version__ = "0.1.0"
