#!/usr/bin/env bash
# `make deploy-check-containers`: every container and cluster file through the program that
# reads it, failing on any error:
#   docker-compose config -q          both compose files (and compose-test's override on top)
#   check-jsonschema vendor.compose-spec  the same files against the Compose Specification
#   hadolint                          every Dockerfile and compose-test Containerfile
#   kubernetes-validate --strict      every document under k8s/ (Kubernetes 1.37 schemas)
#   k8s/Kustomization                 lists exactly k8s/*.yaml, so `apply -k` = `apply -f`
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
TOOLS_BIN="$(deployment/scripts/install-container-tools.sh | tail -n1)"
ok() { printf '   ok  %s\n' "$*"; }

compose_files=(docker-compose.yml docker-compose.prod.yml deployment/compose-test/docker-compose.test.yml)
# config -q needs no engine; DOCKER_HOST is cleared so a stale one cannot matter.
DOCKER_HOST= docker-compose -f docker-compose.yml config -q && ok "docker-compose config -q docker-compose.yml"
DOCKER_HOST= docker-compose -f docker-compose.prod.yml config -q && ok "docker-compose config -q docker-compose.prod.yml"
DOCKER_HOST= PYTHON_IMAGE=x docker-compose -f docker-compose.yml -f deployment/compose-test/docker-compose.test.yml config -q \
    && ok "docker-compose config -q docker-compose.yml + compose-test override"
"$TOOLS_BIN/check-jsonschema" --builtin-schema vendor.compose-spec "${compose_files[@]}" >/dev/null \
    && ok "check-jsonschema vendor.compose-spec ${compose_files[*]}"

mapfile -t dockerfiles < <(ls docker/*.Dockerfile deployment/compose-test/images/*/Containerfile)
# The compose-test stand-ins install Debian's current packages on purpose (DL3008: pinning
# would break with every Debian point release) and run as the users those packages create,
# whose ids Debian assigns at install time (DL3066: no fixed number to give); the shipped
# Dockerfiles justify their own ignores inline.
for file in "${dockerfiles[@]}"; do
    case "$file" in
        deployment/compose-test/*) "$TOOLS_BIN/hadolint" --ignore DL3008 --ignore DL3066 "$file" ;;
        *) "$TOOLS_BIN/hadolint" "$file" ;;
    esac
    ok "hadolint $file"
done

mapfile -t manifests < <(find k8s -name '*.yaml' | sort)
"$TOOLS_BIN/kubernetes-validate" --strict --quiet "${manifests[@]}"
ok "kubernetes-validate --strict ${#manifests[@]} files ($(grep -c '^kind:' "${manifests[@]}" | awk -F: '{s+=$2} END {print s}') documents)"

python3 - <<'PY'
import pathlib, sys
listed = []
in_resources = False
for line in pathlib.Path("k8s/Kustomization").read_text().splitlines():
    if line.startswith("resources:"):
        in_resources = True
    elif in_resources and line.startswith("  - "):
        listed.append(line[4:].strip())
    elif in_resources and line and not line.startswith(" "):
        in_resources = False
present = sorted(p.name for p in pathlib.Path("k8s").glob("*.yaml"))
if sorted(listed) != present:
    sys.exit(f"k8s/Kustomization resources {sorted(listed)} != k8s/*.yaml {present}")
PY
ok "k8s/Kustomization lists exactly k8s/*.yaml"
