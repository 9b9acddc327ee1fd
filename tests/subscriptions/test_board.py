"""Live alerts on the SLT board, and the receiver carried by the web app (``receiver = "web"``)
without its sign-in or CSRF checks, which Graph could never pass."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from pydantic import SecretStr

from remote_guard.settings import NotificationSettings
from remote_guard.store.db import transaction
from remote_guard.subscriptions.hub import Notifications, mount, web_poller
from remote_guard.subscriptions.models import LiveAlertRow
from tests.web.conftest import HOSTILE_NAME, sign_in
from tests.web.slt_tenant import SltTenant, slt_tenant

__all__ = ["slt_tenant"]  # the module-scoped fixture, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.database]

STATE = "0123456789abcdef0123456789abcdef-board-tests"


def _alert(tenant: SltTenant, meeting: str, **changes: Any) -> LiveAlertRow:
    session = tenant.session(meeting)
    row = LiveAlertRow(
        id=str(uuid.uuid4()),
        session_id=session.id,
        school=session.school,
        staff_id=session.organizer_id or "",
        pupil_id=tenant.person_id("p1"),
        join_url=session.join_url,
        reason="no one-to-one registration for this teacher, pupil and session",
        status="open",
        raised_at=tenant.web.clock(),
        details={"staff_name": "x", "pupil_name": HOSTILE_NAME},
    )
    for name, value in changes.items():
        setattr(row, name, value)
    with transaction(tenant.web.db) as db:
        db.add(row)
    return row


@pytest.fixture
def head(slt_tenant: SltTenant) -> Any:
    with slt_tenant.web.client() as client:
        sign_in(client, slt_tenant.web, "head")
        yield client


def test_the_board_shows_an_open_alert_with_the_link_to_drop_in(
    slt_tenant: SltTenant, head: TestClient
) -> None:
    """North's SLT see North's live alert first on the board: who, where, why, and the meeting's
    own join link, opened safely; South's alert and cleared ones are not shown."""
    north = _alert(slt_tenant, "oak-live")
    _alert(slt_tenant, "elm-live", pupil_id=slt_tenant.person_id("p3"))
    _alert(slt_tenant, "oak-live", status="cleared", reason="an old one, cleared")

    page = head.get("/slt").text

    assert "Alone with a pupil now" in page
    section = page.split("Alone with a pupil now", 1)[1].split("<h2>Live now</h2>", 1)[0]
    assert "Olive Oak" in section
    assert "Oak Class maths" in section
    assert north.reason in section
    join = str(escape(north.join_url or ""))
    anchor = section.split(f'<a href="{join}"', 1)[1].split(">", 1)[0]
    assert 'target="_blank"' in anchor
    assert 'rel="noopener noreferrer"' in anchor
    assert "Elm Class science" not in section
    assert "an old one, cleared" not in page


def test_hostile_names_in_an_alert_are_shown_as_text(
    slt_tenant: SltTenant, head: TestClient
) -> None:
    """The pupil named by the alert's stored details (when the snapshot does not name them) is
    escaped like any other text, and a join link that is not Teams' is not offered."""
    _alert(
        slt_tenant,
        "oak-live",
        pupil_id="someone-not-in-the-snapshot",
        join_url="javascript:alert(1)",
    )

    page = head.get("/slt").text

    assert str(escape(HOSTILE_NAME)) in page
    assert HOSTILE_NAME not in page
    assert 'href="javascript:' not in page


def test_a_board_without_alerts_has_no_alert_section(slt_tenant: SltTenant) -> None:
    with slt_tenant.web.client() as client:
        sign_in(client, slt_tenant.web, "head.s")
        with transaction(slt_tenant.web.db) as db:
            for row in db.query(LiveAlertRow):
                row.status = "cleared"
        assert "Alone with a pupil now" not in client.get("/slt").text


def test_the_web_app_carries_the_receiver_without_sign_in_or_csrf(slt_tenant: SltTenant) -> None:
    """Mounted at notification_url's path, the receiver answers Graph's handshake and accepts
    notifications though Graph has no session and no CSRF token; the app's other routes keep
    their checks."""
    web = slt_tenant.web
    settings = web.settings.model_copy(
        update={
            "notifications": NotificationSettings(
                enabled=True,
                notification_url="https://rg.school.example/hooks/graph",
                client_state=SecretStr(STATE),
                receiver="web",
            )
        }
    )
    hub = Notifications(web_poller(settings, web.db, web.app.state.web.graph, web.clock))
    mount(web.app, hub)
    with web.client() as client:
        shake = client.post("/hooks/graph/lifecycle", params={"validationToken": "a b&c"})
        posted = client.post(
            "/hooks/graph",
            json={"value": [{"subscriptionId": "s", "clientState": STATE, "changeType": "x"}]},
        )
        refused = client.post("/api/v1/drop-ins", json={})

    assert (shake.status_code, shake.text) == (200, "a b&c")
    assert posted.status_code == 202
    assert hub.receiver.stats.get("accepted") == 1
    assert refused.status_code in (401, 403)
