"""The ``[web]`` settings section and ``remote-guard serve``: wrong values are refused naming the
file, the key and a good value; the session secret is required to serve and never echoed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.settings import ConfigError, load_settings
from tests.web.conftest import federation

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.toml"


MINIMAL = """
[tenant]
tenant_id = "00000000-0000-4000-8000-000000000000"
client_id = "11111111-1111-4111-8111-111111111111"
client_secret = "replace-me"

[directory]
staff_group_ids = ["aaaaaaaa-0000-4000-8000-000000000001"]
pupil_group_ids = ["aaaaaaaa-0000-4000-8000-000000000002"]

[web]
"""


def _config(tmp_path: Path, web: str) -> Path:
    path = tmp_path / "remote_guard.toml"
    path.write_text(MINIMAL + web + "\n", encoding="utf-8")
    return path


def test_example_has_a_web_section_with_the_defaults() -> None:
    settings = load_settings(EXAMPLE)

    assert settings.web.port == 8000
    assert settings.web.redirect_uri == "http://127.0.0.1:8000/auth/callback"
    assert settings.web.session_secret is None
    assert not settings.web.uses_https


def test_public_url_sets_the_redirect_uri_and_https(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path, 'public_url = "https://rg.north.example/"'))

    assert settings.web.redirect_uri == "https://rg.north.example/auth/callback"
    assert settings.web.uses_https


@pytest.mark.parametrize(
    ("line", "key", "words"),
    [
        ('public_url = "http://rg.north.example"', "web.public_url", "uses http://"),
        ('public_url = "https://rg.north.example/app"', "web.public_url", "no path"),
        ('redirect_path = "auth/callback"', "web.redirect_path", "starting with /"),
        ("port = 0", "web.port", "greater than or equal to 1"),
    ],
)
def test_wrong_web_values_name_the_key_and_a_good_value(
    tmp_path: Path, line: str, key: str, words: str
) -> None:
    path = _config(tmp_path, line)

    with pytest.raises(ConfigError) as error:
        load_settings(path)

    message = str(error.value)
    assert message.startswith(f"{path}: the configuration is not valid.")
    assert f"key {key}" in message
    assert words in message
    assert "Example of a good value:" in message


def test_session_secret_file_is_read_and_a_short_secret_refused(tmp_path: Path) -> None:
    good = tmp_path / "secret"
    good.write_text("a" * 64 + "\n", encoding="utf-8")
    short = tmp_path / "short"
    short.write_text("hunter2-but-longer", encoding="utf-8")

    settings = load_settings(_config(tmp_path, f'session_secret_file = "{good}"'))
    with pytest.raises(ConfigError) as error:
        load_settings(_config(tmp_path, f'session_secret_file = "{short}"'))

    assert settings.web.session_secret is not None
    assert settings.web.session_secret.get_secret_value() == "a" * 64
    assert "key web.session_secret_file: the secret is 18 characters long" in str(error.value)
    assert "hunter2" not in str(error.value)


def test_serve_refuses_to_start_without_a_session_secret(tmp_path: Path) -> None:
    path = _config(tmp_path, "")

    done = subprocess.run(
        [sys.executable, "-m", "remote_guard", "--config", str(path), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert f"{path}: the configuration is not valid." in done.stderr
    assert "key web.session_secret_file: is required by `remote-guard serve`" in done.stderr


def _toml_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))


def test_serve_runs_the_web_app_for_the_configured_tenant(tmp_path: Path) -> None:
    """`remote-guard serve` migrates the database and serves the app on [web] host and port;
    its sign-in goes to the configured tenant's authorize endpoint."""
    scenario = federation()
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant") as server:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        secret = tmp_path / "session_secret"
        secret.write_text("s" * 64, encoding="utf-8")
        tenant = "".join(
            f"{key} = {_toml_value(value)}\n" for key, value in server.tenant_settings().items()
        )
        directory = "".join(
            f"{key} = {_toml_value(value)}\n" for key, value in server.directory_settings().items()
        )
        config = tmp_path / "remote_guard.toml"
        config.write_text(
            f"[tenant]\n{tenant}\n[directory]\n{directory}\n"
            f'[database]\nurl = "sqlite:///{tmp_path / "rg.db"}"\n\n'
            f'[web]\nport = {port}\nsession_secret_file = "{secret}"\n',
            encoding="utf-8",
        )
        environment = {k: v for k, v in os.environ.items() if not k.startswith("REMOTE_GUARD_")}
        process = subprocess.Popen(
            [sys.executable, "-m", "remote_guard", "--config", str(config), "serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    health = requests.get(f"{base}/healthz", timeout=2)
                    break
                except requests.ConnectionError:
                    assert process.poll() is None, process.stdout.read() if process.stdout else ""
                    assert time.monotonic() < deadline, "serve did not start"
                    time.sleep(0.1)
            start = requests.get(f"{base}/sign-in", allow_redirects=False, timeout=5)
        finally:
            process.terminate()
            output = process.communicate(timeout=15)[0]

    assert health.json() == {"status": "ok"}
    assert start.status_code == 303
    assert start.headers["location"].startswith(
        f"{server.base_url}/{scenario.tenant.id}/oauth2/v2.0/authorize?"
    )
    assert f"http://127.0.0.1:{port}/auth/callback" in output
