# The dashboard image: a Node build of frontend/ (npm ci + npm run build -> frontend/dist)
# served as static files by nginx on :80. Build from the repository root:
#   docker build -f docker/frontend.Dockerfile -t aigateway-frontend .
# Until frontend/ holds a package.json the image serves docker/frontend/placeholder.html, so the
# stack comes up without a dashboard.
# Mirrors (all off by default; docker/mirrors-cn.env lists the mainland-China ones):
#   NPM_REGISTRY (no apt runs in this image; the nginx and Node base images come as they are).

ARG NODE_IMAGE=node:20-bookworm-slim
ARG NGINX_IMAGE=nginx:1.27-bookworm

FROM ${NODE_IMAGE} AS build
ARG NPM_REGISTRY=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /build
# `fronten[d]` is optional: the bracket glob may match nothing, and the placeholder always matches.
COPY docker/frontend/placeholder.html fronten[d] /build/
# npm's download cache is a BuildKit cache mount, so `npm ci` after a source-only change is offline.
RUN --mount=type=cache,target=/root/.npm,sharing=locked \
    if [ -f package.json ]; then \
        if [ -n "$NPM_REGISTRY" ]; then npm config set registry "$NPM_REGISTRY"; fi \
        && npm ci --no-audit --no-fund \
        && npm run build; \
    else \
        echo "frontend/package.json not found: serving the placeholder page" \
        && mkdir -p dist && cp placeholder.html dist/index.html; \
    fi \
    && test -f dist/index.html

FROM ${NGINX_IMAGE} AS production
COPY docker/frontend/nginx.conf /etc/nginx/conf.d/default.conf
COPY --from=build /build/dist/ /usr/share/nginx/html/
EXPOSE 80
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1/"]
