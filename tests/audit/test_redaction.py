"""Secrets never reach the logs or the audit trail; chat text and pupils' names stay out too.

Checked over a full poll against the fake tenant (real MSAL sign-in, real Graph client) with
structlog's ``capture_logs`` and with the configured JSON output (which also carries msal's and
urllib3's own debug lines), and over entries written with secrets in them.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy import select
from structlog.testing import capture_logs

from remote_guard import audit
from remote_guard.audit.models import AuditEntryRow
from remote_guard.collect.models import SnapshotRow
from remote_guard.graph.auth import TokenProvider
from remote_guard.logs import REDACTED, configure_logging, redact_secrets
from remote_guard.poll.service import run_poll
from remote_guard.settings import LoggingSettings
from remote_guard.store.db import transaction
from tests.audit.conftest import Store
from tests.e2e.conftest import SCHOOL, Running, school, start

pytestmark = pytest.mark.database

CERTIFICATE = (
    "-----BEGIN CERTIFICATE-----\nMIIC+zCCAeOgAwIBAgIJAKx\nq1w2e3r4t5y6u7i8==\n"
    "-----END CERTIFICATE-----"
)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    structlog.reset_defaults()
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def _secrets(running: Running) -> dict[str, str]:
    tenant = running.poller.settings.tenant
    assert tenant.client_secret is not None
    return {
        "client secret": tenant.client_secret.get_secret_value(),
        "access token": running.poller.graph.tokens.token(),
    }


def _trail_text(running: Running) -> str:
    with running.poller.db() as session:
        payloads = list(session.scalars(select(AuditEntryRow.payload)))
    file = audit.config_for(running.poller.db.kw["bind"]).file
    assert file is not None
    return "\n".join(p or "" for p in payloads) + file.read_text(encoding="utf-8")


def _names() -> list[str]:
    return [person["name"] for person in SCHOOL["people"]]  # type: ignore[index]


@pytest.mark.e2e
def test_full_poll_and_sign_in_leak_nothing_through_structlog(tmp_path: Path) -> None:
    """Every event of a full poll (MSAL sign-in included), after the redaction processor, holds
    no secret and no pupil's or teacher's name; neither does the audit trail."""
    running: Running
    for running in start(school(), tmp_path):
        with capture_logs(processors=[redact_secrets]) as logs:
            result = run_poll(running.poller)
        assert result.status == "ok"
        assert result.graph["tokens_issued"] == 1  # a real sign-in happened inside the capture
        events = {line["event"] for line in logs}
        assert {"graph.token_acquired", "poll.finished"} <= events
        captured = json.dumps(logs, default=repr)
        trail = _trail_text(running)
        for what, value in _secrets(running).items():
            assert value not in captured, f"the {what} reached a log event"
            assert value not in trail, f"the {what} reached the audit trail"
        for name in _names():
            assert name not in captured, f"{name} appears in a log event"
            assert name not in trail, f"{name} appears in the audit trail"


@pytest.mark.e2e
def test_full_poll_leaks_nothing_through_configured_output(tmp_path: Path) -> None:
    """At debug level, with msal's and urllib3's own log lines included, the JSON output of a
    full poll holds no secret."""
    running: Running
    for running in start(school(), tmp_path):
        stream = io.StringIO()
        configure_logging(LoggingSettings(level="debug", format="json"), stream=stream)
        assert run_poll(running.poller).status == "ok"
        output = stream.getvalue()
        assert '"logger": "msal' in output  # msal's own lines went through the processors
        for what, value in _secrets(running).items():
            assert value not in output, f"the {what} reached the log output"


@pytest.mark.e2e
def test_token_acquisition_is_logged_without_the_token(tmp_path: Path) -> None:
    """A fresh MSAL token acquisition (a sign-in) logs that it happened, never the token."""
    running: Running
    for running in start(school(), tmp_path):
        provider = TokenProvider(running.poller.settings.tenant)
        with capture_logs(processors=[redact_secrets]) as logs:
            token = provider.token()
        assert provider.tokens_issued == 1
        assert [line["event"] for line in logs] == ["graph.token_acquired"]
        assert token not in json.dumps(logs, default=repr)


@pytest.mark.e2e
def test_chat_text_is_not_stored(tmp_path: Path) -> None:
    """The school's pupils typed "hi miss"; with store_chat_text off (the default) the words
    are in no snapshot and no audit entry, while who posted and when are kept."""
    running: Running
    for running in start(school(), tmp_path):
        assert running.poller.settings.privacy.store_chat_text is False
        run_poll(running.poller)
        with running.poller.db() as session:
            snapshots = [json.dumps(d) for d in session.scalars(select(SnapshotRow.data))]
        held = "\n".join(snapshots) + _trail_text(running)
        for words in ("hi miss", "Open page 12", "Well done"):
            assert words not in held
        posted = [
            chat
            for snapshot in snapshots
            for chat in json.loads(snapshot).get("chat") or []
            if chat.get("sender_kind") == "person"
        ]
        assert posted
        assert all(chat.get("text") is None and chat["message_id"] for chat in posted)


def test_secrets_in_an_entry_are_removed_before_hashing(store: Store) -> None:
    """Tokens, client secrets, certificates, authorization codes, cookies and Authorization
    headers given to the audit function are stored as [REDACTED], in the table and the file."""
    with transaction(store.db) as session:
        audit.record(
            session,
            "signin.completed",
            object_type="user",
            object_id="dsl-1",
            detail={
                "headers": {"Authorization": "Bearer abc.def.ghi", "Cookie": "rg_session=xyz"},
                "access_token": "opaque-token-value",
                "client_secret": "s3cr3t-value",
                "certificate": CERTIFICATE,
                "note": f"loaded {CERTIFICATE}",
                "callback": "/auth/callback?code=0.AXEA-long-authorization-code&state=s1",
                "code": "0.AXEA-another-long-authorization-code",
            },
        )
    with store.db() as session:
        (payload,) = session.scalars(select(AuditEntryRow.payload))
    assert payload is not None
    stored = json.loads(payload)["detail"]
    assert stored == {
        "headers": {"Authorization": REDACTED, "Cookie": REDACTED},
        "access_token": REDACTED,
        "client_secret": REDACTED,
        "certificate": REDACTED,
        "note": f"loaded {REDACTED}",
        "callback": f"/auth/callback?code={REDACTED}&state=s1",
        "code": REDACTED,
    }
    text = store.file.read_text(encoding="utf-8")
    for secret in ("abc.def.ghi", "xyz", "opaque-token", "s3cr3t", "MIIC", "AXEA"):
        assert secret not in text
        assert secret not in payload
