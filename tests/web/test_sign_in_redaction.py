"""A staff sign-in through the web app leaves no secret in the logs or the audit trail: not the
authorization code, not the tokens, not the session cookie, not the app's client secret."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from structlog.testing import capture_logs

from remote_guard.audit.models import AuditEntryRow
from remote_guard.logs import redact_secrets
from tests.web.conftest import SECRET, WebTenant, authorize_answer

pytestmark = pytest.mark.database


def test_sign_in_leaks_nothing(client: TestClient, web_tenant: WebTenant) -> None:
    """Sign in as a teacher the real way, with every log event captured after redaction."""
    with capture_logs(processors=[redact_secrets]) as logs:
        start = client.get("/sign-in", follow_redirects=False)
        back = authorize_answer(web_tenant, start.headers["location"], "t.oak")
        code = dict(parse_qsl(urlsplit(back.headers["location"]).query))["code"]
        landed = client.get(back.headers["location"], follow_redirects=False)
    assert landed.status_code in {302, 303}
    cookies = [value for value in client.cookies.values() if value]
    assert cookies  # signed in: a session cookie was set
    with web_tenant.db() as session:
        trail = json.dumps(list(session.scalars(select(AuditEntryRow.payload))), default=repr)
        actions = list(session.scalars(select(AuditEntryRow.action)))
    assert any("sign" in action for action in actions), actions  # the sign-in was audited
    secrets = {
        "authorization code": code,
        "client secret": web_tenant.scenario.app.client_secret,
        "session secret": SECRET,
        **{f"cookie {n}": value for n, value in enumerate(cookies)},
    }
    captured = json.dumps(logs, default=repr)
    for what, value in secrets.items():
        assert value not in captured, f"the {what} reached a log event"
        assert value not in trail, f"the {what} reached the audit trail"
