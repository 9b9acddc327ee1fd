"""SLT's job in a real browser: approve a one-to-one, schedule a drop-in from the board, and
find the event in the fake tenant's calendar for that SLT member."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from remote_guard.fakegraph.harness import (
    import_registers,
    scenario_clock,
    settings_for,
    start_web_app,
)
from remote_guard.fakegraph.scenario import parse_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.graph.client import GraphClient
from remote_guard.poll.service import run_poll
from remote_guard.runtime import build_poller
from tests import databases
from tests.web.conftest import DemoWeb, sign_in_as
from tests.web.slt_tenant import SLT_SCENARIO

pytestmark = [pytest.mark.browser, pytest.mark.database]


@pytest.fixture(scope="module")
def slt_web(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWeb]:
    """The SLT test federation, polled once, with its web app served on a free port."""
    tmp = tmp_path_factory.mktemp("slt-web")
    scenario = parse_scenario(SLT_SCENARIO, source="tests/web/slt_tenant.py")
    clock = scenario_clock(scenario)
    with (
        databases.fresh_database(tmp) as database_url,
        FakeTenantServer(scenario, state_dir=tmp / "tenant", clock=clock) as server,
    ):
        settings = settings_for(server, scenario, database_url=database_url, clock=clock)
        poller = build_poller(settings, clock=clock)
        import_registers(poller, scenario, server, clock=clock)
        run_poll(poller)
        web, web_settings = start_web_app(server, settings, clock=clock)
        try:
            yield DemoWeb(server, scenario, web_settings)
        finally:
            web.stop()


def test_slt_approves_then_drops_in_and_the_event_is_in_their_calendar(
    page: Any, slt_web: DemoWeb
) -> None:
    """Keyboard-free but real: sign in through the fake tenant, approve Amelia's one-to-one,
    schedule a drop-in into the live lesson from the board; Graph then holds one event in the
    SLT member's own calendar with the lesson's join link."""
    head_id = slt_web.scenario.person_id("head")
    sign_in_as(page, slt_web, "Hana Head")

    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="One-to-one approvals"
    ).click()
    page.get_by_role("button", name="Approve: Olive Oak with Amelia K.").click()
    assert "The registration is approved" in page.get_by_role("status").inner_text()
    assert "Approved by SLT" in page.get_by_role("table").inner_text()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="SLT board").click()
    live = page.get_by_role("table", name="Sessions on now")
    join = live.get_by_role("link", name="Join to monitor: Oak Class maths")
    assert join.get_attribute("rel") == "noopener noreferrer"
    join_url = join.get_attribute("href")
    live.get_by_role("link", name="Schedule a drop-in: Oak Class maths").click()
    page.get_by_role("button", name="Schedule and add to my calendar").click()

    assert page.get_by_role("heading", level=1).inner_text() == "Monitoring drop-in"
    assert "in your Outlook calendar" in page.get_by_role("status").inner_text()
    [event] = [e for e in slt_web.server.state.created_events if e.user_id == head_id]
    assert event.request_body["subject"] == "Safeguarding drop-in: Oak Class maths"
    assert event.created_teams_meeting is False
    # Read back from the SLT member's calendar through Graph, as Outlook would show it.
    graph = GraphClient(slt_web.settings.tenant)
    stored = graph.get(f"/users/{head_id}/events/{event.event_id}")
    assert stored["subject"] == "Safeguarding drop-in: Oak Class maths"
    assert join_url in stored["body"]["content"].replace("&amp;", "&")
    assert stored["isReminderOn"] is True
