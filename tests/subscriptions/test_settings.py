"""The [notifications] section: off by default, and each wrong value refused with a message
naming the file, the key and a fix, never the secret itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from remote_guard.settings import ConfigError, Settings, load_settings

BASE = """\
[tenant]
tenant_id = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret = "good-secret-value"

[directory]
staff_group_ids = ["aaaaaaaa-0000-4000-8000-000000000001"]
pupil_group_ids = ["aaaaaaaa-0000-4000-8000-000000000002"]
"""
STATE = "e4c1f7a9b2d3e5f60718293a4b5c6d7e8f9012345678abcdef0123456789abcd"
GOOD = f"""
[notifications]
enabled = true
notification_url = "https://remote-guard.school.example/graph-notifications"
client_state = "{STATE}"
roster_events = true
resources = ["call_records", "meeting_chats", "calendars"]
"""


@pytest.fixture(autouse=True)
def _no_remote_guard_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("REMOTE_GUARD_"):
            monkeypatch.delenv(name)


def _load(tmp_path: Path, section: str) -> Settings:
    path = tmp_path / "remote_guard.toml"
    path.write_text(BASE + section, encoding="utf-8")
    return load_settings(path)


def _error(tmp_path: Path, section: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, section)
    return str(caught.value)


def test_off_by_default(tmp_path: Path) -> None:
    settings = _load(tmp_path, "")
    assert settings.notifications.enabled is False
    assert settings.notifications.roster_events is False


def test_a_complete_section_loads(tmp_path: Path) -> None:
    notifications = _load(tmp_path, GOOD).notifications
    assert notifications.lifecycle_url == (
        "https://remote-guard.school.example/graph-notifications/lifecycle"
    )
    assert notifications.receiver_path == "/graph-notifications"
    assert notifications.resources == ("call_records", "meeting_chats", "calendars")
    assert STATE not in repr(notifications)


def test_client_state_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "state"
    secret.write_text(STATE + "\n", encoding="utf-8")
    section = GOOD.replace(f'client_state = "{STATE}"', f'client_state_file = "{secret}"')
    state = _load(tmp_path, section).notifications.client_state
    assert state.get_secret_value() == STATE


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ('notification_url = "https://', 'notification_url = "http://', "notifications.notification_url", "https://"),
        ('/graph-notifications"', '/graph-notifications?x=1"', "notifications.notification_url", "no query"),
        (f'client_state = "{STATE}"', 'client_state = "short"', "notifications.client_state", "5 characters long"),
        (f'client_state = "{STATE}"', f'client_state = "{"x" * 129}"', "notifications.client_state", "129 characters long"),
        (f'client_state = "{STATE}"', "", "notifications.client_state_file", "is required when enabled"),
        ('notification_url = "https://remote-guard.school.example/graph-notifications"', "", "notifications.notification_url", "is required when enabled"),
        ('resources = ["call_records"', 'resources = ["call_recordz"', "notifications.resources", "call_records"),
        ("roster_events = true", 'roster_events = true\ntls_cert_file = "/etc/x.pem"', "notifications.tls_key_file", "go together"),
        ("roster_events = true", 'roster_events = true\nrecieve = "web"', "notifications.recieve", "did you mean receiver"),
    ],
)  # fmt: skip
def test_wrong_values_name_the_key_and_the_fix(
    tmp_path: Path, old: str, new: str, key: str, words: str
) -> None:
    assert old in GOOD
    message = _error(tmp_path, GOOD.replace(old, new, 1))
    assert str(tmp_path / "remote_guard.toml") in message
    assert f"key {key}" in message
    assert words in message
    assert "Example of a good value" in message
    assert STATE not in message


def test_an_unreadable_client_state_file(tmp_path: Path) -> None:
    section = GOOD.replace(f'client_state = "{STATE}"', 'client_state_file = "/nonexistent/s"')
    message = _error(tmp_path, section)
    assert "key notifications.client_state_file" in message
    assert "/nonexistent/s cannot be read" in message
