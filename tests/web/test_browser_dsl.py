"""The DSL's job in a real browser, on the demo federation polled once: take a finding's case
from new to closed, and the audit trail in the database shows each step. Also the screenshot of
the review queue (dsl-queue.png: see the screenshot_dir fixture)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from remote_guard.audit.models import AuditEntryRow
from remote_guard.fakegraph.demo import demo_scenario
from remote_guard.fakegraph.harness import (
    import_registers,
    scenario_clock,
    settings_for,
    start_web_app,
)
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.poll.service import Poller, run_poll
from remote_guard.runtime import build_poller
from tests import databases
from tests.web.conftest import DemoWeb, sign_in_as

pytestmark = [pytest.mark.browser, pytest.mark.database]


@dataclass
class PolledDemo:
    demo: DemoWeb
    poller: Poller

    def audit(self, *, object_id: str | None = None) -> list[AuditEntryRow]:
        with self.poller.db() as db:
            query = select(AuditEntryRow).order_by(AuditEntryRow.seq)
            if object_id is not None:
                query = query.where(AuditEntryRow.object_id == object_id)
            return list(db.scalars(query))


@pytest.fixture(scope="module")
def polled_demo(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolledDemo]:
    """The demo federation (as ``make demo`` serves it), polled once, with its web app."""
    tmp = tmp_path_factory.mktemp("dsl-demo")
    scenario = demo_scenario()
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
            yield PolledDemo(DemoWeb(server, scenario, web_settings), poller)
        finally:
            web.stop()


def test_screenshot_of_the_review_queue(
    page: Any, polled_demo: PolledDemo, screenshot_dir: Path
) -> None:
    """The DSL's queue after one poll of the demo: sessions with open findings, newest first."""
    demo = polled_demo.demo
    sign_in_as(page, demo, demo.name_of("dsl"))
    page.set_viewport_size({"width": 1280, "height": 1000})
    assert page.url == demo.url + "/dsl"
    rows = page.locator("table.dsl-queue tbody tr")
    assert rows.count() > 3
    assert "high" in page.locator("table.dsl-queue").inner_text()
    shot = screenshot_dir / "dsl-queue.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_a_dsl_takes_a_case_from_new_to_closed(page: Any, polled_demo: PolledDemo) -> None:
    """Filter to new high-severity cases, open the newest, start the review, close it as a
    concern recorded with a note; each step is in the audit trail with the DSL's id."""
    demo = polled_demo.demo
    dsl_name = demo.name_of("dsl")
    sign_in_as(page, demo, dsl_name)
    page.get_by_label("Severity").select_option("high")
    page.get_by_label("Case status").select_option("new")
    page.get_by_role("button", name="Show sessions").click()
    first = page.locator("table.dsl-queue tbody tr").first.get_by_role("link")
    subject = first.inner_text()
    first.click()
    assert page.get_by_role("heading", level=1).inner_text() == subject
    session_id = re.sub(r"^.*/dsl/sessions/([^/?#]+).*$", r"\1", page.url)
    status = page.get_by_test_id("case-status")
    assert status.inner_text() == "New"

    page.get_by_label("Note (optional)").first.fill("Looking at the attendance.")
    page.get_by_role("button", name="Start review").click()
    assert page.get_by_role("status").inner_text() == "The case's status was changed."
    assert status.inner_text() == "In review"

    page.get_by_role("group", name="Resolution").get_by_label("Concern recorded").check()
    page.get_by_label("Note (optional)").fill("Logged on CPOMS; spoke to the teacher.")
    page.get_by_role("button", name="Close case").click()
    assert status.inner_text() == "Closed"
    assert page.get_by_test_id("case-resolution").inner_text() == "Concern recorded"
    notes = page.get_by_role("list", name="Notes and history").inner_text()
    assert "Looking at the attendance." in notes
    assert "Logged on CPOMS; spoke to the teacher." in notes

    # The audit trail: the view, the two moves (and the notes they carry), by the DSL.
    dsl_id = next(p for p in demo.scenario.people if p.name == dsl_name).key
    dsl_oid = demo.scenario.person_id(dsl_id)
    viewed = [e for e in polled_demo.audit(object_id=session_id) if e.action == "web.viewed"]
    assert viewed
    assert all(e.actor_id == dsl_oid for e in viewed)
    case_entries = [
        e
        for e in polled_demo.audit()
        if e.object_type == "case" and session_id in e.payload and e.action != "case.opened"
    ]
    assert [(e.action, e.actor_id, e.actor_role) for e in case_entries] == [
        ("case.status_changed", dsl_oid, "dsl"),
        ("case.status_changed", dsl_oid, "dsl"),
    ]
    assert '"after":{"resolution":null,"status":"in_review"}' in case_entries[0].payload
    assert '"after":{"resolution":"concern_recorded","status":"closed"}' in case_entries[1].payload
    # The poller opened the case after its cycle, as the service itself.
    opened = [
        e for e in polled_demo.audit() if e.action == "case.opened" and session_id in e.payload
    ]
    assert [(e.actor_id, e.actor_role) for e in opened] == [("system", "system")]
