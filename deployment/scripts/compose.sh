#!/usr/bin/env bash
# Runs Docker Compose for the Makefile's Docker targets: `docker compose` (v2) when present,
# else `docker-compose` (v1). Stops at once, with what to do, when Docker cannot be used here:
# no docker client, no reachable daemon, or no compose.
set -euo pipefail

stop() {
    {
        echo "make: this target needs Docker: $1"
        echo "  Install Docker Engine with the compose plugin (https://docs.docker.com/engine/install/),"
        echo "  or run the gateway natively without Docker: make run   (then: make health-check)"
    } >&2
    exit 1
}

command -v docker >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 \
    || stop "neither \`docker\` nor \`docker-compose\` is installed."
if command -v docker >/dev/null 2>&1; then
    docker info >/dev/null 2>&1 \
        || stop "the Docker daemon is not reachable (\`docker info\` failed${DOCKER_HOST:+ for DOCKER_HOST=$DOCKER_HOST})."
    if docker compose version >/dev/null 2>&1; then
        exec docker compose "$@"
    fi
fi
command -v docker-compose >/dev/null 2>&1 \
    || stop "Docker Compose is missing (neither \`docker compose\` nor \`docker-compose\`)."
exec docker-compose "$@"
