"""A teacher's jobs in a real browser, on the demo federation polled once: register a one-to-one
with consent (SLT approve it on their page) and see the pre-session finding resolve; record a
withdrawal of consent and see the next session flagged. Also the screenshot of My sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remote_guard.fakegraph.demo import demo_scenario
from remote_guard.fakegraph.harness import (
    import_registers,
    scenario_clock,
    settings_for,
    start_web_app,
)
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.poll.service import run_poll
from remote_guard.runtime import build_poller
from tests import databases
from tests.web.conftest import DemoWeb, sign_in_as

pytestmark = [pytest.mark.browser, pytest.mark.database]


@pytest.fixture(scope="module")
def polled_demo(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWeb]:
    """The demo federation (as ``make demo`` serves it), polled once, with its web app."""
    tmp = tmp_path_factory.mktemp("teacher-demo")
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
            yield DemoWeb(server, scenario, web_settings)
        finally:
            web.stop()


def _invited_pupil(demo: DemoWeb, meeting_key: str) -> str:
    """The display name of the one pupil invited to a demo one-to-one."""
    meeting = next(m for m in demo.scenario.meetings if m.key == meeting_key)
    names = {person.key: person.name for person in demo.scenario.people}
    [pupil] = meeting.invitees
    return names[pupil]


def _session(page: Any, subject: str) -> Any:
    """The list item of one session on My sessions."""
    return page.locator("li.session").filter(
        has=page.get_by_role("heading", level=3, name=subject, exact=True)
    )


def test_screenshot_of_my_sessions(page: Any, polled_demo: DemoWeb, screenshot_dir: Path) -> None:
    """Anita Sharma's day: a live lesson with the meeting chat on (its messages are read once it
    ends), and a one-to-one later today that nobody registered."""
    sign_in_as(page, polled_demo, "Anita Sharma")
    page.set_viewport_size({"width": 1200, "height": 900})

    live = _session(page, "Year 1 Robins Class - Reading: Owl Babies")
    upcoming = _session(page, "Reading catch-up - Robins Class")

    assert "Live now" in page.get_by_role("heading", level=2).all_inner_texts()[0]
    assert "Breach" in upcoming.inner_text()
    assert "One-to-one session without approval and parental consent" in upcoming.inner_text()
    assert "Warning" in live.inner_text()
    shot = screenshot_dir / "my-sessions.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_a_registered_and_approved_one_to_one_resolves_on_the_page(
    page: Any, browser: Any, polled_demo: DemoWeb
) -> None:
    """The teacher registers this afternoon's one-to-one with the parent's consent, by the
    meeting it belongs to; the head of school approves it on the SLT page; the teacher's page
    then shows the pre-session finding resolved."""
    pupil = _invited_pupil(polled_demo, "shadwell-robins-reading-1to1")
    subject = "Reading catch-up - Robins Class"
    sign_in_as(page, polled_demo, "Anita Sharma")
    assert "Breach" in _session(page, subject).inner_text()

    page.get_by_role("link", name="Register a one-to-one").first.click()
    page.get_by_label("Pupil", exact=True).select_option(label=pupil)
    page.get_by_label("Activity", exact=True).select_option(label="reading")
    page.get_by_label("One of my Teams meetings").check()
    meeting = page.get_by_label("Teams meeting (if it is for one meeting)")
    option = meeting.locator("option", has_text=subject)
    meeting.select_option(value=option.get_attribute("value"))
    page.get_by_label("Who gave consent").fill("Claire Whiteley")
    page.get_by_label("Their relationship to the pupil").fill("mother")
    page.get_by_label("Date consent was given").fill(
        page.evaluate("new Date().toISOString().slice(0, 10)")
    )
    page.get_by_label("Signed form").check()
    page.get_by_label("Evidence reference").fill("Signed form in the Robins consent folder")
    page.get_by_role("button", name="Register the one-to-one").click()

    assert "The one-to-one is registered" in page.get_by_role("status").inner_text()
    assert "Waiting for SLT approval" in page.get_by_role("table").inner_text()
    page.get_by_role("link", name="Back to my sessions").click()
    waiting = _session(page, subject).inner_text()
    assert "Breach" in waiting
    assert "waiting for SLT approval" in waiting

    slt = browser.new_context(ignore_https_errors=True)
    try:
        slt_page = slt.new_page()
        sign_in_as(slt_page, polled_demo, "Priya Chauhan")
        slt_page.goto(polled_demo.url + "/slt/one-to-ones")
        slt_page.get_by_role("button", name=f"Approve: Anita Sharma with {pupil}").click()
        assert "approved" in slt_page.get_by_role("status").inner_text()
    finally:
        slt.close()

    page.reload()
    resolved = _session(page, subject).inner_text()
    assert "No problems found." in resolved
    assert "Resolved" in resolved
    assert "registered, approved, with parental consent" in resolved


def test_withdrawn_consent_flags_the_next_session(page: Any, polled_demo: DemoWeb) -> None:
    """Emma Clegg's reading one-to-one later today is registered, approved and consented; the
    parent withdraws consent, she records it, and the session is flagged straight away."""
    pupil = _invited_pupil(polled_demo, "bramham-rowan-reading-1to1")
    subject = "Reading with Mrs Clegg"
    sign_in_as(page, polled_demo, "Emma Clegg")
    assert "No problems found." in _session(page, subject).inner_text()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="My one-to-ones").click()
    page.get_by_role("link", name=f"View consent or record a withdrawal for {pupil}").click()
    assert page.get_by_label("Date and time consent was withdrawn").input_value() != ""
    page.get_by_label("Who told the school").fill("The pupil's mother, by phone to the office")
    page.get_by_label("Note (optional)").fill("She would like reading in class only for now.")
    page.get_by_role("button", name="Record withdrawal").click()

    assert "The withdrawal of consent is recorded" in page.get_by_role("status").inner_text()
    assert "Consent was withdrawn on" in page.get_by_role("main").inner_text()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My sessions").click()
    flagged = _session(page, subject).inner_text()
    assert "Breach" in flagged
    assert "parental consent was withdrawn on" in flagged
