#!/usr/bin/env bash
# Checks that need a Docker engine and the network, so they are not part of `make test` or CI:
# validate compose.yaml, build the image, and check the image runs as uid 10001 and answers
# `remote-guard --help`. Run from anywhere:  deploy/check-docker.sh
# Where Docker Hub cannot be reached, name a Python 3.11 Debian bookworm image that can be pulled:
#   PYTHON_IMAGE=registry.example/python:3.11-slim-bookworm deploy/check-docker.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
command -v docker >/dev/null || { echo "docker is not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "no Docker engine is running (docker info failed)" >&2; exit 1; }

# compose needs the secret files and the settings file to exist; empty ones will do here.
cleanup=()
for name in client_secret session_secret audit_key pgpass db_password; do
    if [ ! -e "$here/secrets/$name" ]; then
        mkdir -p "$here/secrets"; : > "$here/secrets/$name"; cleanup+=("$here/secrets/$name")
    fi
done
if [ ! -e "$here/remote_guard.toml" ]; then : > "$here/remote_guard.toml"; cleanup+=("$here/remote_guard.toml"); fi
trap 'rm -f "${cleanup[@]}"; rmdir "$here/secrets" 2>/dev/null || true' EXIT

if docker compose version >/dev/null 2>&1; then
    docker compose -f "$here/compose.yaml" config --quiet
    echo "compose.yaml: valid"
else
    echo "compose.yaml: NOT checked (the docker compose plugin is not installed)" >&2
fi
# The Dockerfile needs BuildKit. Asking for it here makes a client without it (Engine 23+ CLI
# without the buildx plugin) say so, instead of falling back to the legacy builder and failing
# on RUN --mount.
build_args=()
if [ -n "${PYTHON_IMAGE:-}" ]; then build_args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"); fi
DOCKER_BUILDKIT=1 docker build ${build_args[@]+"${build_args[@]}"} -f "$here/Dockerfile" -t remote-guard:check "$root"
uid="$(docker run --rm --entrypoint id remote-guard:check -u)"
[ "$uid" = "10001" ] || { echo "the image runs as uid $uid, not 10001" >&2; exit 1; }
docker run --rm remote-guard:check --help >/dev/null
echo "image remote-guard:check: builds, runs as uid 10001, remote-guard starts"
