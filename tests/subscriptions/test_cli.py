"""``remote-guard poll`` with change notifications: the receiver's listener, and what it says
when it cannot start."""

from __future__ import annotations

import socket

import pytest
import requests

from remote_guard.cli import UsageError, _notifications
from tests.subscriptions.conftest import LiveRun

pytestmark = pytest.mark.e2e


def test_a_taken_port_is_a_usage_error_naming_the_setting(running: LiveRun) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    settings = running.poller.settings
    running.poller.settings = settings.model_copy(
        update={"notifications": settings.notifications.model_copy(update={"listen_port": port})}
    )
    try:
        with pytest.raises(UsageError) as caught:
            _notifications(running.poller)
    finally:
        taken.close()
    assert f"[notifications] listen_port {port}: cannot listen on 127.0.0.1:{port}" in str(
        caught.value
    )


def test_the_poller_hosts_the_receiver(
    running: LiveRun, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a free port the receiver answers Graph's handshake, and the poller keeps the live
    overlay and the subscription job."""
    settings = running.poller.settings
    running.poller.settings = settings.model_copy(
        update={"notifications": settings.notifications.model_copy(update={"listen_port": 0})}
    )
    hub, receiver = _notifications(running.poller)
    try:
        assert receiver is not None
        answer = requests.post(
            receiver.url("/graph-notifications"),
            params={"validationToken": "hello"},
            verify=str(running.server.ca_path),
            timeout=10,
        )
        assert (answer.status_code, answer.text) == (200, "hello")
        assert running.poller.live_overlay is not None
        assert [job.id for job in hub.jobs()] == [f"subscriptions:{settings.tenant.tenant_id}"]
        assert "Change notifications: receiving at" in capsys.readouterr().out
    finally:
        if receiver is not None:
            receiver.stop()
        hub.stop()
