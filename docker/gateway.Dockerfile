# The gateway image. Build from the repository root (the context needs Cargo.*, src/, actors/,
# bench/mock-upstream/, proto/, migrations/, config/):
#   docker build -f docker/gateway.Dockerfile --target production -t aigateway-backend .
# Targets:
#   builder             the release binary, with cargo's registry and target dir as BuildKit caches
#   development         the toolchain; compose mounts the source and runs `cargo run`
#   production          minimal non-root runtime: the binary (migrations embedded) + config/
#   production-prebuilt the same runtime around a binary built on the host (PREBUILT_BINARY,
#                       a path inside the context): for machines that cannot pull a Rust image
# Mirrors (all off by default; docker/mirrors-cn.env lists the mainland-China ones):
#   CARGO_REGISTRY_MIRROR (sparse index, e.g. sparse+https://…/crates.io-index/), DEBIAN_MIRROR.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS toolchain
ARG DEBIAN_MIRROR=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The mirror replaces the host part of every Debian source, whichever file the image keeps them in.
RUN if [ -n "$DEBIAN_MIRROR" ]; then \
        sed -i "s|http://deb.debian.org|${DEBIAN_MIRROR}|g" /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null || true; \
    fi
# curl: the compose healthcheck of the development service.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ARG CARGO_REGISTRY_MIRROR=""
# Source replacement cannot be set through the environment, so it goes into cargo's own config.
RUN if [ -n "$CARGO_REGISTRY_MIRROR" ]; then \
        printf '[source.crates-io]\nreplace-with = "mirror"\n[source.mirror]\nregistry = "%s"\n' \
            "$CARGO_REGISTRY_MIRROR" >> "${CARGO_HOME:-/usr/local/cargo}/config.toml"; \
    fi
WORKDIR /src

# ---------------------------------------------------------------------------------------------
FROM toolchain AS builder
# Everything the workspace needs (members, benches, proto, migrations); .dockerignore keeps
# target/, .git and the Python and Node trees out of the context.
COPY . .
# The target dir is a cache mount (kept between builds, not in the image), so the binary is
# copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p gateway \
    && install -D -m 0755 target/release/gateway /out/gateway

# ---------------------------------------------------------------------------------------------
FROM toolchain AS development
ENV CARGO_TARGET_DIR=/cargo-target \
    GATEWAY_ENV=development
EXPOSE 8080 9091
# The source is a bind mount (docker-compose.yml); registry and target dir are named volumes.
CMD ["cargo", "run", "--locked", "-p", "gateway", "--", "serve"]

# ---------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
ARG DEBIAN_MIRROR=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN if [ -n "$DEBIAN_MIRROR" ]; then \
        sed -i "s|http://deb.debian.org|${DEBIAN_MIRROR}|g" /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null || true; \
    fi
# ca-certificates: HTTPS upstreams (hosted APIs); curl: the HEALTHCHECK. Versions follow the
# pinned base image's release, so they are not pinned twice.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin gateway \
    && install -d -o gateway -g gateway /app /app/data
WORKDIR /app
COPY config/ /app/config/
ENV GATEWAY_ENV=production \
    GATEWAY_CONFIG_DIR=/app/config \
    GATEWAY_BIND=0.0.0.0:8080 \
    METRICS_BIND=0.0.0.0:9091
EXPOSE 8080 9091
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health"]
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["serve"]

# ---------------------------------------------------------------------------------------------
FROM runtime AS production-prebuilt
ARG PREBUILT_BINARY=.prebuilt/gateway
COPY ${PREBUILT_BINARY} /usr/local/bin/gateway

# ---------------------------------------------------------------------------------------------
# Last, so a plain `docker build` without --target gives the production image.
FROM runtime AS production
COPY --from=builder /out/gateway /usr/local/bin/gateway
