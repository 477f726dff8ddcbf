# The model server image: chat (llama.cpp via xllamacpp) + embeddings (onnxruntime), HTTP :5000
# and gRPC :50051. Build from the repository root so that proto/ is in the context:
#   docker build -f docker/models.Dockerfile -t aigateway-models .
# The models are PyPI packages, so the image works offline once built.
# Mirrors (all off by default; docker/mirrors-cn.env lists the mainland-China ones):
#   PIP_INDEX_URL, DEBIAN_MIRROR, HF_ENDPOINT (only for models loaded from a hub; the packaged
#   ones never are).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG PIP_INDEX_URL=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app
COPY proto/ proto/
COPY python-models/requirements.txt python-models/requirements-models.txt python-models/install.sh python-models/
COPY python-models/model_server/ python-models/model_server/
# pip reads PIP_INDEX_URL itself; an empty one would be an error, so it is set only when given.
# pip's download cache is a BuildKit cache mount: a rebuild after a pin change fetches only it.
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    if [ -n "$PIP_INDEX_URL" ]; then export PIP_INDEX_URL; else unset PIP_INDEX_URL; fi \
    && bash python-models/install.sh \
    && find /app -name __pycache__ -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE} AS runtime
ARG DEBIAN_MIRROR=""
ARG HF_ENDPOINT=https://huggingface.co
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN if [ -n "$DEBIAN_MIRROR" ]; then \
        sed -i "s|http://deb.debian.org|${DEBIAN_MIRROR}|g" /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null || true; \
    fi
# libgomp: the OpenMP runtime of the llama.cpp build inside xllamacpp; curl: the HEALTHCHECK.
# Versions follow the pinned base image's Debian release, so they are not pinned twice.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin models
WORKDIR /app/python-models
# The venv must keep its path (/app/python-models/.venv): its scripts point at it.
COPY --from=build /app /app
ENV PATH=/app/python-models/.venv/bin:$PATH \
    OMP_WAIT_POLICY=PASSIVE \
    HOST=0.0.0.0 PORT=5000 GRPC_PORT=50051 \
    PYTHONUNBUFFERED=1 \
    HF_ENDPOINT=${HF_ENDPOINT}
USER 10001:10001
EXPOSE 5000 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${PORT}/health\""]
CMD ["python", "-m", "model_server"]
