"""WCAG 2.2 AA on the main pages, as axe-core checks them in the real browser, and keyboard-only
use of the DSL's queue.

axe-core comes from the pinned dev dependency axe-playwright-python (it ships axe.min.js), so
nothing is downloaded at test time. Without it the tests skip saying so; under CI=true they fail,
like the browser tests without chromium.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib import resources
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

# WCAG 2.0, 2.1 and 2.2, levels A and AA: what the issue asks the pages to meet.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def axe_source() -> str:
    """axe.min.js from the installed axe-playwright-python package."""
    try:
        return (resources.files("axe_playwright_python") / "axe.min.js").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        problem = f"axe-core is not installed ({exc}): pip install -e '.[dev]'"
        if os.environ.get("CI") == "true":
            pytest.fail(f"accessibility tests must run in CI: {problem}")
        pytest.skip(f"accessibility test skipped: {problem}")


def axe_violations(page: Any, axe: str) -> list[str]:
    """Run axe-core on the page as it is now; one line per violation and element."""
    # Evaluated through the DevTools protocol, so the app's Content-Security-Policy (no inline
    # scripts) does not apply to it.
    page.evaluate(axe)
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: "
        "['violations']})",
        WCAG_TAGS,
    )
    assert result["testEngine"]["name"] == "axe-core"
    return [
        f"{page.url}: {v['id']} ({v['impact']}): {v['help']} -> {node['target']} "
        f"{node['failureSummary']}"
        for v in result["violations"]
        for node in v["nodes"]
    ]


@pytest.fixture(scope="module")
def polled_demo(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWeb]:
    """The demo federation (as ``make demo`` serves it), polled once, with its web app."""
    tmp = tmp_path_factory.mktemp("a11y-demo")
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


def _first_case_path(page: Any) -> str:
    href: str = page.locator("table.dsl-queue tbody a").first.get_attribute("href")
    return href


# Each role's pages: a path, or "" for the page the previous step reached.
PAGES = {
    "dsl": ["/dsl", "case", "/dsl/sessions/{case}/handoff"],
    "slt": ["/slt", "/slt/one-to-ones", "/slt/coverage", "/slt/drop-ins", "/slt/activities"],
    "teacher": ["/my-sessions", "/my-sessions/one-to-ones", "/my-sessions/one-to-ones/new"],
}


@pytest.mark.parametrize("role", sorted(PAGES))
def test_main_pages_have_no_wcag_violations(page: Any, polled_demo: DemoWeb, role: str) -> None:
    """Every page of the role, after signing in the real way, passes axe-core's WCAG 2.2 AA
    rules."""
    axe = axe_source()
    sign_in_as(page, polled_demo, polled_demo.name_of(role))
    found: list[str] = []
    case = ""
    for step in PAGES[role]:
        if step == "case":
            case = _first_case_path(page).rsplit("/", 1)[1]
            page.goto(polled_demo.url + f"/dsl/sessions/{case}")
        else:
            page.goto(polled_demo.url + step.format(case=case))
        assert page.get_by_role("heading", level=1).count() == 1, page.url
        found += axe_violations(page, axe)
    assert not found, "\n".join(found)


def test_screenshot_of_the_slt_board(page: Any, polled_demo: DemoWeb, screenshot_dir: Path) -> None:
    """SLT's board of the demo day: live and upcoming sessions, each with its join link."""
    sign_in_as(page, polled_demo, polled_demo.name_of("slt"))
    page.set_viewport_size({"width": 1280, "height": 900})
    assert page.url == polled_demo.url + "/slt"
    assert page.get_by_role("link", name="Join to monitor").count() > 0
    shot = screenshot_dir / "slt-board.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_signed_out_pages_have_no_wcag_violations(page: Any, polled_demo: DemoWeb) -> None:
    """The sign-in page (the landing page) and the page after signing out."""
    axe = axe_source()
    page.goto(polled_demo.url + "/")
    found = axe_violations(page, axe)
    sign_in_as(page, polled_demo, polled_demo.name_of("teacher"))
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signed-out")
    found += axe_violations(page, axe)
    assert not found, "\n".join(found)


def test_a_dsl_moves_a_case_with_the_keyboard_only(page: Any, polled_demo: DemoWeb) -> None:
    """From the queue, Tab to the first session's link, Enter, Tab to "Start review", Enter:
    the case is in review. Nothing is clicked; the focus must be visible on the way."""
    sign_in_as(page, polled_demo, polled_demo.name_of("dsl"))
    target = page.locator("table.dsl-queue tbody a").first
    subject = target.inner_text()

    for _ in range(80):  # the skip link, the header, the navigation and the filters come first
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the first session in the queue")
    assert _focus_is_visible(page)
    page.keyboard.press("Enter")
    page.wait_for_url("**/dsl/sessions/**")
    assert subject in page.get_by_role("heading", level=1).inner_text()

    start = page.get_by_role("button", name="Start review")
    for _ in range(80):
        page.keyboard.press("Tab")
        if start.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the Start review button")
    assert _focus_is_visible(page)
    # The form posts and the page reloads: wait for the new page's status, not the old one's.
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.get_by_test_id("case-status").inner_text() == "In review"


def _focus_is_visible(page: Any) -> bool:
    """The focused element draws an outline (WCAG 2.4.7 Focus Visible)."""
    style = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth, s.boxShadow]; }"
    )
    outline_style, outline_width, box_shadow = style
    return (outline_style != "none" and outline_width != "0px") or box_shadow != "none"
