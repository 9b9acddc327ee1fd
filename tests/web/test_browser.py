"""Signing in the real way in a real browser: each demo role lands on its home page, a pupil is
refused, signing out ends the session, and a teacher cannot open the DSL's queue."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.conftest import DemoWeb, sign_in_as

pytestmark = [pytest.mark.browser, pytest.mark.database]


HOMES = {
    # role: (home page, its heading, the role shown beside the name)
    "dsl": ("/dsl", "DSL review queue", "DSL"),
    "deputy_dsl": ("/dsl", "DSL review queue", "Deputy DSL"),
    "slt": ("/slt", "SLT board", "SLT"),
    "teacher": ("/my-sessions", "My sessions", "Teacher"),
}


@pytest.mark.parametrize("role", sorted(HOMES))
def test_each_demo_role_signs_in_and_lands_on_its_home(
    page: Any, demo_web: DemoWeb, role: str
) -> None:
    """The fake tenant's page lists the demo staff; the web app sends each role home."""
    home, heading, label = HOMES[role]
    name = demo_web.name_of(role)

    sign_in_as(page, demo_web, name)

    assert page.url == demo_web.url + home
    assert page.get_by_role("heading", level=1).inner_text() == heading
    banner = page.get_by_role("banner")
    assert name in banner.inner_text()
    assert banner.locator(".role").inner_text() == label
    assert (
        page.get_by_role("navigation", name="Main")
        .get_by_role("link", name=heading)
        .get_attribute("aria-current")
        == "page"
    )


def test_a_pupil_account_is_refused(page: Any, demo_web: DemoWeb) -> None:
    """A pupil can sign in to Microsoft, but remote_guard says it is for staff and keeps no
    session: the next page asks to sign in again."""
    sign_in_as(page, demo_web, demo_web.name_of("pupil"))

    assert page.get_by_role("heading", level=1).inner_text() == "remote_guard is for school staff"
    assert "pupil account" in page.get_by_role("main").inner_text()
    assert page.context.cookies(demo_web.url) == []
    page.goto(demo_web.url + "/my-sessions")
    assert "(simulated)" in page.get_by_role("heading", level=1).inner_text()


def test_sign_out_ends_the_session(page: Any, demo_web: DemoWeb) -> None:
    """The sign-out button (a POST with the CSRF token) ends the session; pages then need a new
    sign-in."""
    sign_in_as(page, demo_web, demo_web.name_of("teacher"))

    page.get_by_role("button", name="Sign out").click()

    assert page.url == demo_web.url + "/signed-out"
    assert page.get_by_role("heading", level=1).inner_text() == "You have signed out"
    page.goto(demo_web.url + "/my-sessions")
    assert "(simulated)" in page.get_by_role("heading", level=1).inner_text()


def test_a_teacher_cannot_reach_the_dsl_queue(page: Any, demo_web: DemoWeb) -> None:
    """Typing the DSL queue's address as a teacher gives the 403 page, not the queue, and the
    navigation never offered it."""
    sign_in_as(page, demo_web, demo_web.name_of("teacher"))
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="DSL review queue").count() == 0

    response = page.goto(demo_web.url + "/dsl")

    assert response is not None
    assert response.status == 403
    assert (
        page.get_by_role("heading", level=1).inner_text() == "You do not have access to this page"
    )
    assert "DSL review queue" not in page.get_by_role("main").inner_text()


def test_the_skip_link_is_the_first_tab_stop(page: Any, demo_web: DemoWeb) -> None:
    """Keyboard users reach "Skip to main content" first, and it moves focus to the main area."""
    sign_in_as(page, demo_web, demo_web.name_of("slt"))

    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent.trim()")
    page.keyboard.press("Enter")

    assert focused == "Skip to main content"
    assert page.evaluate("document.activeElement.id") == "main"
