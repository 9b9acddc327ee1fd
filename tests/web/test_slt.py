"""SLT's pages and API against the fake tenant: the board, approving one-to-ones (and the
finding that resolves at once), the approved activities, drop-ins put into the SLT member's
own Outlook calendar through Graph (idempotent by transactionId; a 403 or 429 shown with a
retry), outcomes passed to the DSL, coverage, the audit trail and escaping of hostile text."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select

from remote_guard.audit.models import AuditEntryRow
from remote_guard.cases.models import CaseNoteRow, CaseRow
from remote_guard.consent.models import ApprovedActivityRow, RegistrationRow
from remote_guard.consent.service import load_registers
from remote_guard.dropins.calendar import DropInEvent, create_event, transaction_id_for
from remote_guard.dropins.models import DropInRow
from remote_guard.fakegraph.scenario import ALL_APP_PERMISSIONS
from remote_guard.store.db import transaction
from tests.web.conftest import HOSTILE_NAME, csrf_token, sign_in
from tests.web.slt_tenant import HOSTILE_NOTE, HOSTILE_SUBJECT, SltTenant, slt_tenant

pytestmark = pytest.mark.database

__all__ = ["slt_tenant"]  # the module-scoped fixture, used by name


@pytest.fixture
def head(slt_tenant: SltTenant) -> Any:
    """A client signed in as Hana Head (SLT, North)."""
    with slt_tenant.web.client() as client:
        sign_in(client, slt_tenant.web, "head")
        yield client


def _audit(tenant: SltTenant, action: str, object_id: str) -> list[AuditEntryRow]:
    with tenant.web.db() as db:
        return list(
            db.scalars(
                select(AuditEntryRow).where(
                    AuditEntryRow.action == action, AuditEntryRow.object_id == object_id
                )
            )
        )


def _dropin(tenant: SltTenant, dropin_id: str) -> DropInRow:
    with tenant.web.db() as db:
        row = db.get(DropInRow, dropin_id)
    assert row is not None
    return row


def _schedule(client: TestClient, session_id: str, **body: Any) -> dict[str, Any]:
    answer = client.post(
        "/api/v1/drop-ins",
        json={"session_id": session_id, **body},
        headers={"X-CSRF-Token": csrf_token(client)},
    )
    assert answer.status_code == 201, answer.text
    data: dict[str, Any] = answer.json()
    return data


def _events_with(tenant: SltTenant, transaction_id: str) -> list[Any]:
    return [e for e in tenant.server.state.created_events if e.transaction_id == transaction_id]


# --- the board -------------------------------------------------------------------------------


def test_board_lists_live_then_upcoming_sessions_of_my_school(
    slt_tenant: SltTenant, head: TestClient
) -> None:
    """North's SLT see North's live lesson first, then the upcoming ones, with pupils expected,
    open findings and the lesson's own join link; never South's lesson."""
    rows = head.get("/api/v1/board").json()

    assert [(row["subject"], row["live"]) for row in rows] == [
        ("Oak Class maths", True),
        ("Reading with Amelia", False),
        (HOSTILE_SUBJECT, False),
    ]
    live = rows[0]
    assert live["teacher_name"] == "Olive Oak"
    assert live["pupils_expected"] == 2
    assert live["join_url"] == slt_tenant.session("oak-live").join_url
    assert live["join_url"].startswith("https://teams.microsoft.com/l/meetup-join/")
    assert rows[1]["open_findings"] >= 1  # the unapproved one-to-one is flagged before it starts


def test_board_page_links_join_to_monitor_safely(slt_tenant: SltTenant, head: TestClient) -> None:
    """The join link opens Teams in a new tab without handing it this page (noopener
    noreferrer); it is the stored join URL, not a new meeting."""
    page = head.get("/slt").text
    join = str(escape(slt_tenant.session("oak-live").join_url or ""))

    anchor = page.split(f'<a href="{join}"', 1)[1].split(">", 1)[0]
    assert 'target="_blank"' in anchor
    assert 'rel="noopener noreferrer"' in anchor
    assert "Join to monitor" in page
    assert "Elm Class science" not in page


def test_board_school_filter(slt_tenant: SltTenant) -> None:
    """The DSL-free filter: South's SLT narrowing to South see South's lesson; North is not
    theirs to ask for."""
    with slt_tenant.web.client() as client:
        sign_in(client, slt_tenant.web, "head.s")
        rows = client.get("/api/v1/board?school=south").json()
        assert [row["subject"] for row in rows] == ["Elm Class science"]
        assert client.get("/slt?school=north").status_code == 403


# --- approvals -------------------------------------------------------------------------------


def test_approvals_page_shows_the_consent_behind_each_registration(
    slt_tenant: SltTenant, head: TestClient
) -> None:
    """Who gave consent, when, how, the evidence reference, expiry and withdrawal; opening the
    page is in the audit trail, since it shows pupils and their parents' consent."""
    viewed_before = len(_audit(slt_tenant, "web.viewed", "approvals"))
    page = head.get("/slt/one-to-ones").text
    amelia = page.split("Olive Oak with Amelia K.: reading", 1)[1].split("</section>", 1)[0]

    for shown in ("Kate K. (mother)", "Wed 4 Nov 2026", "Signed form", "Form OTO-3"):
        assert shown in amelia
    assert "No expiry" in amelia
    assert "<dt>Withdrawn</dt>\n  <dd>No</dd>" in amelia
    assert "Reading with Amelia, Wed 18 Nov 14:00" in amelia
    assert len(_audit(slt_tenant, "web.viewed", "approvals")) == viewed_before + 1


def test_approving_resolves_the_one_to_one_finding_at_once(
    slt_tenant: SltTenant, head: TestClient
) -> None:
    """Approving Amelia's registration re-evaluates the planned one-to-one straight away: the
    pre-session finding turns to pass without waiting for a poll, and the approval is in the
    audit trail under the SLT member's name."""
    assert slt_tenant.one_to_one_status("oak-1to1-soon", "p1") == "fail"

    answer = head.post(
        "/slt/one-to-ones/registration-amelia/approve",
        data={"csrf_token": csrf_token(head)},
        follow_redirects=False,
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == "/slt/one-to-ones?done=approved"
    assert slt_tenant.one_to_one_status("oak-1to1-soon", "p1") == "pass"
    with slt_tenant.web.db() as db:
        row = db.get(RegistrationRow, "registration-amelia")
    assert row is not None
    assert (row.status, row.approved_by) == ("approved", slt_tenant.person_id("head"))
    assert row.recorded_by == slt_tenant.person_id("t.oak")  # still the teacher's record
    [entry] = _audit(slt_tenant, "registration.approved", "registration-amelia")
    assert (entry.actor_id, entry.actor_role) == (slt_tenant.person_id("head"), "slt")
    assert "Approved by SLT" in head.get("/slt/one-to-ones").text


def test_unapproved_activity_then_decline_with_a_reason(
    slt_tenant: SltTenant, head: TestClient
) -> None:
    """An activity off the list cannot be approved; declining needs a reason; the reason is
    kept, shown escaped, and audited."""
    token = csrf_token(head)
    refused = head.post(
        "/slt/one-to-ones/registration-knitting/approve", data={"csrf_token": token}
    )
    assert refused.status_code == 409
    assert "&#39;Knitting club&#39; is not on the approved list" in refused.text

    no_reason = head.post(
        "/slt/one-to-ones/registration-knitting/decline", data={"csrf_token": token}
    )
    assert no_reason.status_code == 409
    assert "Give a reason for declining" in no_reason.text

    declined = head.post(
        "/slt/one-to-ones/registration-knitting/decline",
        data={"csrf_token": token, "reason": HOSTILE_NOTE[:1500]},
    )
    assert declined.status_code == 200  # followed to the page
    assert str(escape(HOSTILE_NOTE[:40])) in declined.text
    assert "<img src=x" not in declined.text
    with slt_tenant.web.db() as db:
        row = db.get(RegistrationRow, "registration-knitting")
    assert row is not None
    assert (row.status, row.decision_reason) == ("declined", HOSTILE_NOTE[:1500].strip())
    assert len(_audit(slt_tenant, "registration.declined", "registration-knitting")) == 1


def test_slt_cannot_decide_their_own_one_to_one(slt_tenant: SltTenant, head: TestClient) -> None:
    answer = head.post(
        "/api/v1/approvals/registration-heads-own/approve",
        headers={"X-CSRF-Token": csrf_token(head)},
    )
    assert answer.status_code == 403
    with slt_tenant.web.db() as db:
        row = db.get(RegistrationRow, "registration-heads-own")
    assert row is not None
    assert row.status == "pending"


def test_approvals_api_lists_registrations_with_consent(head: TestClient) -> None:
    found = head.get("/api/v1/approvals").json()
    everything = {item["id"]: item for item in found["pending"] + found["decided"]}
    own = everything["registration-heads-own"]
    assert own["can_decide"] is False
    assert own["consent"]["evidence_ref"] == "Form OTO-5"
    assert own["consent"]["state"] == "current"
    assert "registration-isla" not in everything  # South's pupil


# --- approved activities -----------------------------------------------------------------------


def test_activities_are_added_and_retired_with_history(
    slt_tenant: SltTenant, head: TestClient
) -> None:
    """A retired activity stays listed with who retired it; sessions before the retirement stay
    approved for it, later ones are not; a name already on the list is refused."""
    token = csrf_token(head)
    added = head.post("/slt/activities", data={"csrf_token": token, "name": " Music  practice "})
    assert added.status_code == 200
    assert "Music practice" in added.text
    again = head.post("/slt/activities", data={"csrf_token": token, "name": "music PRACTICE"})
    assert again.status_code == 400
    assert "already on the approved list" in again.text

    retired = head.post("/slt/activities/retire", data={"csrf_token": token, "name": "Talk Times"})

    assert retired.status_code == 200
    with slt_tenant.web.db() as db:
        row = db.get(ApprovedActivityRow, "Talk Times")
        registers = load_registers(db)
    assert row is not None
    assert row.retired_at is not None
    assert row.retired_by == slt_tenant.person_id("head")
    assert "Talk Times" not in registers.approved_activities
    assert registers.activity_approved("talk times", at=row.retired_at - timedelta(minutes=1))
    assert not registers.activity_approved("Talk Times", at=row.retired_at + timedelta(minutes=1))
    assert "Retired" in head.get("/slt/activities").text
    assert len(_audit(slt_tenant, "activity.retired", "Talk Times")) == 1


# --- drop-ins and the calendar -----------------------------------------------------------------


def test_a_drop_in_puts_an_event_in_the_slt_members_own_calendar(
    slt_tenant: SltTenant, head: TestClient
) -> None:
    """POST /users/{SLT}/events with a transactionId: subject, the session's times, the join
    link in the body, a 10-minute reminder, no Teams meeting made and no one invited."""
    session = slt_tenant.session("oak-live")
    page = head.get(f"/slt/drop-ins/new?session_id={session.id}")
    assert page.status_code == 200

    answer = head.post(
        "/slt/drop-ins",
        data={"csrf_token": csrf_token(head), "session_id": session.id, "part": "whole"},
        follow_redirects=False,
    )

    assert answer.status_code == 303
    dropin_id = answer.headers["location"].split("/")[-1].split("?")[0]
    assert answer.headers["location"].endswith("?done=in-calendar")
    row = _dropin(slt_tenant, dropin_id)
    assert row.transaction_id == transaction_id_for(dropin_id)
    [event] = _events_with(slt_tenant, row.transaction_id)
    assert event.user_id == slt_tenant.person_id("head")
    assert event.event_id == row.graph_event_id
    assert event.created_teams_meeting is False
    body = event.request_body
    assert body["subject"] == "Safeguarding drop-in: Oak Class maths"
    assert body["isOnlineMeeting"] is False
    assert "onlineMeetingProvider" not in body
    assert (body["isReminderOn"], body["reminderMinutesBeforeStart"]) == (True, 10)
    assert "attendees" not in body
    assert str(escape(session.join_url or "")) in body["body"]["content"]
    assert session.scheduled_start is not None
    assert body["start"] == {
        "dateTime": session.scheduled_start.strftime("%Y-%m-%dT%H:%M:%S"),
        "timeZone": "UTC",
    }
    # The SLT member's calendar, read back through Graph with the app's own client.
    graph = slt_tenant.web.app.state.web.graph
    stored = graph.get(f"/users/{slt_tenant.person_id('head')}/events/{event.event_id}")
    assert stored["subject"] == "Safeguarding drop-in: Oak Class maths"
    assert "In your Outlook calendar" in head.get(f"/slt/drop-ins/{dropin_id}").text
    assert len(_audit(slt_tenant, "dropin.added_to_calendar", dropin_id)) == 1


def test_the_same_transaction_id_never_makes_two_events(
    slt_tenant: SltTenant, head: TestClient
) -> None:
    """Two POSTs with one transactionId give one event; a retry after the answer was lost (the
    event id never stored) finds that event instead of making another; sending the form twice
    gives one drop-in."""
    head_id = slt_tenant.person_id("head")
    session = slt_tenant.session("oak-1to1-soon")
    assert session.scheduled_start is not None
    assert session.scheduled_end is not None
    event = DropInEvent(
        slt_user_id=head_id,
        transaction_id=transaction_id_for("idempotency-check"),
        session_subject="Reading with Amelia",
        teacher_name="Olive Oak",
        join_url=session.join_url,
        starts_at=session.scheduled_start,
        ends_at=session.scheduled_end,
        timezone="Europe/London",
    )
    graph = slt_tenant.web.app.state.web.graph

    first, second = create_event(graph, event), create_event(graph, event)

    assert first == second
    assert len(_events_with(slt_tenant, event.transaction_id)) == 1

    body = {"starts_at": session.scheduled_start.isoformat(), "minutes": 10}
    scheduled = _schedule(head, session.id, **body)
    assert _schedule(head, session.id, **body)["id"] == scheduled["id"]  # the form sent twice
    with transaction(slt_tenant.web.db) as db:
        stored = db.get(DropInRow, scheduled["id"])
        assert stored is not None
        stored.graph_event_id = None  # as if the answer was lost before it was stored
    retried = head.post(
        f"/api/v1/drop-ins/{scheduled['id']}/calendar", headers={"X-CSRF-Token": csrf_token(head)}
    ).json()
    assert retried["graph_event_id"] == scheduled["graph_event_id"]
    assert len(_events_with(slt_tenant, transaction_id_for(scheduled["id"]))) == 1


def test_a_403_from_graph_is_shown_and_the_drop_in_can_be_retried(
    slt_tenant: SltTenant, head: TestClient
) -> None:
    """Without Calendars.ReadWrite the drop-in is kept "not in calendar", the page says why in
    plain words with a retry button; once the permission is back, the retry adds it."""
    state = slt_tenant.server.state
    session = slt_tenant.session("hostile-upcoming")
    state.app_permissions.discard("Calendars.ReadWrite")
    state.expire_tokens()
    try:
        answer = head.post(
            "/slt/drop-ins",
            data={"csrf_token": csrf_token(head), "session_id": session.id, "part": "whole"},
        )
    finally:
        state.app_permissions.update(ALL_APP_PERMISSIONS)
        state.expire_tokens()

    assert answer.status_code == 200
    page = answer.text
    assert "Not in calendar." in page
    assert "HTTP 403: access denied" in page
    assert "Calendars.ReadWrite" in page
    assert "Try again to add it to my calendar" in page
    dropin_id = str(answer.url).split("/")[-1]
    row = _dropin(slt_tenant, dropin_id)
    assert (row.status, row.graph_event_id) == ("scheduled", None)
    assert _events_with(slt_tenant, row.transaction_id) == []
    [failed] = _audit(slt_tenant, "dropin.calendar_failed", dropin_id)
    assert '"status":403' in (failed.payload or "")

    retried = head.post(
        f"/slt/drop-ins/{dropin_id}/calendar", data={"csrf_token": csrf_token(head)}
    )

    assert "The drop-in is in your Outlook calendar" in retried.text
    assert len(_events_with(slt_tenant, row.transaction_id)) == 1


def test_throttling_after_retries_is_shown(slt_tenant: SltTenant, head: TestClient) -> None:
    """Graph answering 429 to every retry leaves the drop-in out of the calendar with the
    reason; the next try goes through."""
    session = slt_tenant.session("oak-live")
    tenant_settings = slt_tenant.web.settings.tenant
    slt_tenant.server.state.inject(
        r"/users/[^/]+/events", 429, count=tenant_settings.max_retries + 1, retry_after=0.01
    )

    scheduled = _schedule(head, session.id, minutes=5)

    assert scheduled["in_calendar"] is False
    assert "HTTP 429, too many requests" in scheduled["calendar_error"]
    retried = head.post(
        f"/api/v1/drop-ins/{scheduled['id']}/calendar", headers={"X-CSRF-Token": csrf_token(head)}
    ).json()
    assert (retried["in_calendar"], retried["calendar_error"]) == (True, None)


# --- outcomes ----------------------------------------------------------------------------------


def test_a_concern_goes_to_the_dsl_case_of_the_session(slt_tenant: SltTenant) -> None:
    """South's SLT drop into the live South lesson and raise a concern: the drop-in is done,
    the session's case carries the notes for the DSL, and the notes are shown escaped."""
    with slt_tenant.web.client() as client:
        sign_in(client, slt_tenant.web, "head.s")
        dropin = _schedule(client, slt_tenant.sessions["elm-live"])
        token = csrf_token(client)
        empty = client.post(
            f"/slt/drop-ins/{dropin['id']}/outcome",
            data={"csrf_token": token, "outcome": "concern_raised"},
        )
        assert empty.status_code == 400
        assert "Say what the concern is" in empty.text

        answer = client.post(
            f"/slt/drop-ins/{dropin['id']}/outcome",
            data={"csrf_token": token, "outcome": "concern_raised", "notes": HOSTILE_NOTE},
        )

        assert "the concern is on the DSL&#39;s case" in answer.text
        assert str(escape(HOSTILE_NOTE[:40])) in answer.text
        assert "<img src=x" not in answer.text
    row = _dropin(slt_tenant, dropin["id"])
    assert (row.status, row.outcome) == ("done", "concern_raised")
    with slt_tenant.web.db() as db:
        case = db.scalars(
            select(CaseRow).where(CaseRow.session_id == slt_tenant.sessions["elm-live"])
        ).one()
        notes = [note.text for note in db.scalars(select(CaseNoteRow)) if note.case_id == case.id]
    assert row.case_id == case.id
    assert any(HOSTILE_NOTE.strip() in text for text in notes)
    assert len(_audit(slt_tenant, "dropin.outcome_recorded", dropin["id"])) == 1


def test_outcomes_wait_for_the_drop_in_and_not_able_to_join_is_missed(
    slt_tenant: SltTenant, head: TestClient
) -> None:
    token = {"X-CSRF-Token": csrf_token(head)}
    upcoming = _schedule(head, slt_tenant.sessions["hostile-upcoming"], minutes=15)
    early = head.post(
        f"/api/v1/drop-ins/{upcoming['id']}/outcome",
        json={"outcome": "no_concern"},
        headers=token,
    )
    assert early.status_code == 409
    assert "has not started yet" in early.json()["detail"]

    live = _schedule(head, slt_tenant.sessions["oak-live"], minutes=6)
    missed = head.post(
        f"/api/v1/drop-ins/{live['id']}/outcome",
        json={"outcome": "not_able_to_join", "notes": "Teams would not open"},
        headers=token,
    ).json()
    assert (missed["status"], missed["outcome"]) == ("missed", "not_able_to_join")


def test_cancelled_drop_in_cannot_take_an_outcome(slt_tenant: SltTenant, head: TestClient) -> None:
    token = {"X-CSRF-Token": csrf_token(head)}
    dropin = _schedule(head, slt_tenant.sessions["oak-live"], minutes=7)
    cancelled = head.post(f"/api/v1/drop-ins/{dropin['id']}/cancel", headers=token).json()
    assert cancelled["status"] == "cancelled"
    late = head.post(
        f"/api/v1/drop-ins/{dropin['id']}/outcome", json={"outcome": "no_concern"}, headers=token
    )
    assert late.status_code == 409


def test_only_the_owner_changes_a_drop_in(slt_tenant: SltTenant) -> None:
    """The DSL-free rule for colleagues: another SLT member who sees both schools could read a
    drop-in but not record its outcome; South's SLT do not see North's at all."""
    with slt_tenant.web.client() as client:
        sign_in(client, slt_tenant.web, "head")
        dropin = _schedule(client, slt_tenant.sessions["oak-live"], minutes=8)
    with slt_tenant.web.client() as other:
        sign_in(other, slt_tenant.web, "head.s")
        assert other.get(f"/slt/drop-ins/{dropin['id']}").status_code == 404
        answer = other.post(
            f"/api/v1/drop-ins/{dropin['id']}/outcome",
            json={"outcome": "no_concern"},
            headers={"X-CSRF-Token": csrf_token(other)},
        )
        assert answer.status_code == 404


# --- coverage ----------------------------------------------------------------------------------


def test_coverage_counts_visits_this_half_term(slt_tenant: SltTenant, head: TestClient) -> None:
    """A drop-in recorded as done on Olive Oak's live lesson covers her; this morning's
    unregistered one-to-one with Noah was not visited; sessions not started yet do not count."""
    dropin = _schedule(head, slt_tenant.sessions["oak-live"], minutes=9)
    head.post(
        f"/api/v1/drop-ins/{dropin['id']}/outcome",
        json={"outcome": "no_concern"},
        headers={"X-CSRF-Token": csrf_token(head)},
    )

    found = head.get("/api/v1/coverage").json()

    assert (found["period_start"], found["period_end"]) == ("2026-11-02", "2026-12-18")
    assert found["from_terms"] is True
    assert [(t["name"], t["visited"]) for t in found["teachers"]] == [("Olive Oak", True)]
    assert found["teacher_share"] == 100
    assert [(s["subject"], s["visited"]) for s in found["one_to_ones"]] == [
        ("Maths catch-up with Noah", False)
    ]
    assert found["one_to_one_share"] == 0
    page = head.get("/slt/coverage").text
    assert "this half-term (2 Nov to 18 Dec 2026)" in page
    assert "100% (1 of 1)" in page
    assert "Maths catch-up with Noah" in page.split("One-to-one sessions not visited", 1)[1]
    assert HOSTILE_NAME not in page  # their lesson has not started: not counted


# --- the API document and CSRF -------------------------------------------------------------------


def test_api_changes_need_the_csrf_header(slt_tenant: SltTenant, head: TestClient) -> None:
    answer = head.post("/api/v1/drop-ins", json={"session_id": slt_tenant.sessions["oak-live"]})
    assert answer.status_code == 403


def test_openapi_describes_the_slt_api(head: TestClient) -> None:
    paths = head.get("/api/v1/openapi.json").json()["paths"]
    for path in (
        "/api/v1/approvals",
        "/api/v1/approvals/{registration_id}/approve",
        "/api/v1/approvals/{registration_id}/decline",
        "/api/v1/activities",
        "/api/v1/activities/retire",
        "/api/v1/board",
        "/api/v1/drop-ins",
        "/api/v1/drop-ins/{dropin_id}/outcome",
        "/api/v1/drop-ins/{dropin_id}/calendar",
        "/api/v1/coverage",
    ):
        assert path in paths, path
    assert not any(path.startswith("/slt") for path in paths)


def test_hostile_subject_and_name_are_escaped_on_every_slt_page(
    slt_tenant: SltTenant, head: TestClient
) -> None:
    raw_subject, raw_name = '<script>alert("board")</script>', '<script>alert("x")</script>'
    dropin = _schedule(head, slt_tenant.sessions["hostile-upcoming"], minutes=20)
    pages = [
        "/slt",
        "/slt/drop-ins",
        f"/slt/drop-ins/{dropin['id']}",
        f"/slt/drop-ins/new?session_id={slt_tenant.sessions['hostile-upcoming']}",
    ]
    for path in pages:
        text = head.get(path).text
        assert raw_subject not in text, path
        assert raw_name not in text, path
        assert str(escape(raw_subject)) in text, path
