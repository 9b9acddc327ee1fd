#!/usr/bin/env bash
# Checks that need a Docker engine and the network, so they are not part of `make test` or CI:
# validate compose.yaml, build the image, and check the image runs as uid 10001 and answers
# `remote-guard --help`. Run from anywhere:  deploy/check-docker.sh
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

docker compose -f "$here/compose.yaml" config --quiet
echo "compose.yaml: valid"
docker build -f "$here/Dockerfile" -t remote-guard:check "$root"
uid="$(docker run --rm --entrypoint id remote-guard:check -u)"
[ "$uid" = "10001" ] || { echo "the image runs as uid $uid, not 10001" >&2; exit 1; }
docker run --rm remote-guard:check --help >/dev/null
echo "image remote-guard:check: builds, runs as uid 10001, remote-guard starts"
