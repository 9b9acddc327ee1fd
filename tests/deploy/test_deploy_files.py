"""deploy/: the Dockerfile, compose.yaml and the systemd units say what the README promises.

Docker itself is not needed: the files are parsed and checked here. `docker compose config`
runs only where the compose plugin exists and never under CI; building the image needs a
Docker engine and the network, so it is in deploy/check-docker.sh, run by hand.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from remote_guard.cli import _parser
from remote_guard.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = {
    "poll": DEPLOY / "systemd" / "remote-guard-poll.service",
    "web": DEPLOY / "systemd" / "remote-guard-web.service",
}
HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "ReadWritePaths=/var/lib/remote-guard",
    "CapabilityBoundingSet=",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter=@system-service",
)


def subcommands() -> set[str]:
    parser = _parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)  # type: ignore[arg-type]


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split by stage."""
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    stages: list[list[str]] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_slim_and_runs_unprivileged() -> None:
    stages = dockerfile_stages()
    assert len(stages) == 2
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim(-bookworm)?\n", text)
    final = stages[-1]
    users = [line for line in final if line.startswith("USER ")]
    assert users == ["USER 10001:10001"]
    # Nothing runs as root after USER, and the wheels come from the build stage, not the net.
    after_user = final[final.index(users[0]) :]
    assert not any(line.startswith("RUN ") for line in after_user)
    assert any("--no-index" in line and "from=build" in line for line in final)


def test_dockerfile_bakes_in_no_secret() -> None:
    for stage in dockerfile_stages():
        for line in stage:
            if line.startswith(("ENV ", "ARG ", "LABEL ")):
                assert not re.search(r"(?i)secret|password|passwd|token|hmac|_key\b", line), line
            if line.startswith(("COPY ", "ADD ")):
                assert not re.search(r"(?i)secret|\.pem|\.key|remote_guard\.toml|\.env", line), line
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[1] == "*"  # everything is excluded unless listed


def test_dockerfile_copies_what_exists_and_starts_a_real_command() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--)(\S+)", text, re.M):
        assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["remote-guard", "--config", "/etc/remote-guard/remote_guard.toml"]' in text
    assert 'CMD ["serve"]' in text
    # The health check asks the web app's liveness page, which the web app serves.
    assert "http://127.0.0.1:8000/healthz" in text
    from remote_guard.ops.web import router

    assert "/healthz" in {getattr(route, "path", "") for route in router.routes}
    assert "ops_web.router" in (ROOT / "src" / "remote_guard" / "web" / "app.py").read_text()


# --- compose.yaml ---------------------------------------------------------------------------


def compose() -> dict[str, object]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_poller_and_web_from_one_image_after_postgres_is_healthy() -> None:
    data = compose()
    services = data["services"]
    assert isinstance(services, dict)
    assert set(services) == {"db", "migrate", "poll", "web"}
    db = services["db"]
    assert db["image"].startswith("postgres:15")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    volume = db["volumes"][0].split(":")[0]
    assert volume in data["volumes"]  # a named volume, not a host folder
    commands = subcommands()
    for name in ("migrate", "poll", "web"):
        service = services[name]
        assert service["image"] == "remote-guard:latest"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["command"][0] in commands
        assert service["depends_on"]["db"] == {"condition": "service_healthy"}
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
    for name in ("poll", "web"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]


def test_compose_passes_secrets_as_files_only() -> None:
    data = compose()
    secrets = data["secrets"]
    assert isinstance(secrets, dict)
    for name, spec in secrets.items():
        assert set(spec) == {"file"}, name
        assert spec["file"].startswith("./secrets/")
    services = data["services"]
    assert isinstance(services, dict)
    for name, service in services.items():
        for secret in service.get("secrets", []):
            assert secret in secrets, f"{name} uses an undeclared secret {secret}"
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"(?i)password|secret|key", key):
                assert key.endswith("_FILE"), f"{name}: {key} must name a file"
            assert "@" not in str(value) or ":" not in str(value).split("@")[0].split("//")[-1], (
                f"{name}: {key} holds a password"
            )


@pytest.mark.parametrize("name", sorted(UNITS))
def test_units_are_hardened(name: str) -> None:
    text = UNITS[name].read_text()
    lines = set(text.splitlines())
    for directive in HARDENING:
        assert directive in lines, f"{name}: {directive}"
    assert "User=remote-guard" in lines
    assert "StateDirectory=remote-guard" in lines
    # Secrets come as credentials, never as values in the unit.
    assert not re.search(r"(?im)^Environment=.*(SECRET|KEY|PASSWORD)=(?!%d/)", text)
    for command in re.findall(r"^ExecStart(?:Pre)?=\S+ --config \S+ (\S+)", text, re.M):
        assert command in subcommands()


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing: CI must verify the units")
        pytest.skip("systemd-analyze is not installed: the units were only parsed")
    executable = Path(sys.executable).with_name("remote-guard")
    assert executable.is_file()
    copies = []
    for unit in UNITS.values():
        # verify checks that ExecStart exists: point it at this checkout's command.
        text = unit.read_text().replace("/opt/remote-guard/venv/bin/remote-guard", str(executable))
        copy = tmp_path / unit.name
        copy.write_text(text)
        copies.append(str(copy))
    done = subprocess.run(
        [analyze, "verify", *copies], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # Unknown or misspelt directives are only warned about: any message is a failure here.
    ours = [line for line in done.stderr.splitlines() if str(tmp_path) in line]
    assert ours == []


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_credentials_reach_the_settings(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Environment= lines of a unit, with %d its credentials folder, load every secret."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "client_secret").write_text("the-client-secret\n")
    (credentials / "audit_key").write_text("a" * 64)
    (credentials / "session_secret").write_text("s" * 64)
    for key in [k for k in os.environ if k.startswith("REMOTE_GUARD_")]:
        monkeypatch.delenv(key)
    for line in UNITS[name].read_text().splitlines():
        if line.startswith("Environment="):
            variable, _, value = line.removeprefix("Environment=").partition("=")
            monkeypatch.setenv(variable, value.replace("%d", str(credentials)))
    config = tmp_path / "remote_guard.toml"
    config.write_text(
        '[tenant]\ntenant_id = "contoso.onmicrosoft.com"\n'
        'client_id = "11111111-2222-4333-8444-555555555555"\n'
        '[directory]\nstaff_group_ids = ["a"]\npupil_group_ids = ["b"]\n'
    )
    settings = load_settings(config)
    assert settings.tenant.client_secret is not None
    assert settings.tenant.client_secret.get_secret_value() == "the-client-secret"
    assert settings.audit.hmac_key is not None
    assert (settings.web.session_secret is not None) is (name == "web")
