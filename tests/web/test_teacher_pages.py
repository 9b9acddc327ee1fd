"""The teacher's pages against a polled fake tenant: My sessions, registering a one-to-one with
its consent, recording a withdrawal, adding context; validation, re-evaluation, audit and
hostile text. The access matrix is in test_access_teacher.py, the API in test_teacher_api.py."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from remote_guard.audit.models import AuditEntryRow
from remote_guard.cases.models import CaseNoteRow, CaseRow
from remote_guard.consent.models import ConsentRow, RegistrationRow
from remote_guard.consent.registers import Consent
from remote_guard.consent.service import save_consent
from remote_guard.one_to_ones.models import ConsentWithdrawalRow
from remote_guard.store.db import transaction
from remote_guard.web.evaluation import reevaluate
from tests.web.conftest import csrf_token, sign_in
from tests.web.teacher_tenant import (
    HOSTILE_NOTE,
    HOSTILE_SUBJECT,
    TeacherTenant,
    teacher_tenant,
)

pytestmark = pytest.mark.database

__all__ = ["teacher_tenant"]  # the module-scoped fixture, used by name

ONE_TO_ONE = "one_to_one_without_consent"
ONE_TO_ONE_TITLE = "One-to-one session without approval and parental consent"


def _client(tenant: TeacherTenant, person: str) -> TestClient:
    client = tenant.web.client()
    sign_in(client, tenant.web, person)
    return client


def _section(page: str, heading: str) -> str:
    """The HTML of the My sessions group headed ``heading`` (up to the next group)."""
    start = page.index(f">{heading} (")
    end = page.find('<section class="session-group"', start)
    return page[start : end if end != -1 else len(page)]


def _count(tenant: TeacherTenant, model: Any) -> int:
    with tenant.web.db() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def _audit_actions(tenant: TeacherTenant, actor: str) -> list[str]:
    with tenant.web.db() as db:
        return list(
            db.scalars(
                select(AuditEntryRow.action)
                .where(AuditEntryRow.actor_id == tenant.person_id(actor))
                .order_by(AuditEntryRow.seq)
            )
        )


def _form(client: TestClient, **fields: str) -> dict[str, str]:
    return {"csrf_token": csrf_token(client), **fields}


# --- My sessions ------------------------------------------------------------------------------


def test_my_sessions_groups_the_teachers_own_sessions_with_their_findings(
    teacher_tenant: TeacherTenant,
) -> None:
    client = _client(teacher_tenant, "t.oak")

    page = client.get("/my-sessions")

    assert page.status_code == 200
    text = page.text
    live, upcoming, past = (
        _section(text, "Live now"),
        _section(text, "Upcoming"),
        _section(text, "Past four weeks"),
    )
    assert "Oak Class maths" in live
    assert "Reading with Amelia" in upcoming
    assert "Reading with Noah" in upcoming
    assert "Year 3 &#34;Oak&#34;" in past
    # School local time, the end given as a clock time on the same day.
    assert "Wed 18 Nov 14:00 to 14:20" in upcoming
    # The unregistered one-to-one: rule title, status in words, the message and the next step.
    soon = upcoming[: upcoming.index("Reading with Noah")]
    assert ONE_TO_ONE_TITLE in soon
    assert ">Breach<" in soon
    assert "no one-to-one registration for this teacher" in soon
    assert "Teacher: register this one-to-one with the parent&#39;s consent" in soon
    # The registered one-to-one has nothing to look at.
    assert "No problems found." in upcoming[upcoming.index("Reading with Noah") :]
    # The live lesson's chat finding is exempted: shown, and said to be exempted with why.
    assert ">Exempted<" in live
    assert "Warning, exempted until" in live
    assert "Chat moderated by the teaching assistant for this lesson" in live
    # Pupil chat yesterday: a warning, with its next step.
    assert "Warning" in past
    assert "Noah B. posted 1 message" in past
    # Another teacher's session never appears.
    assert "Catch-up with Isla" not in text


def test_another_teacher_sees_only_their_own_sessions(teacher_tenant: TeacherTenant) -> None:
    elm = _client(teacher_tenant, "t.elm").get("/my-sessions").text
    ash = _client(teacher_tenant, "t.ash").get("/my-sessions").text
    dsl = _client(teacher_tenant, "dsl").get("/my-sessions").text

    assert "Catch-up with Isla" in elm
    assert "Reading with Amelia" not in elm
    assert "Oak Class maths" not in elm
    for other in (ash, dsl):
        assert "Reading with Amelia" not in other
        assert "Catch-up with Isla" not in other
        assert other.count("<p>No sessions.</p>") == 3


def test_hostile_subjects_are_shown_as_text(teacher_tenant: TeacherTenant) -> None:
    page = _client(teacher_tenant, "t.oak").get("/my-sessions").text

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;lesson&#34;)&lt;/script&gt;" in page
    assert HOSTILE_SUBJECT in html.unescape(page)


# --- registering a one-to-one -----------------------------------------------------------------


def _registration_fields(tenant: TeacherTenant, **overrides: str) -> dict[str, str]:
    fields = {
        "pupil": tenant.person_id("p1"),
        "activity": "reading",
        "covers": "meeting",
        "meeting": tenant.sessions["oak-1to1-soon"],
        "starts_at": "",
        "ends_at": "",
        "given_by": "Grace K.",
        "relationship": "mother",
        "given_on": "2026-11-16",
        "method": "email",
        "evidence_ref": "E-mail of 16 Nov, in the office inbox",
        "scope": "one_to_one",
        "expires_on": "2027-07-23",
        "contact_email": "grace.k@parents.example",
    }
    return {**fields, **overrides}


def test_the_register_form_offers_only_the_teachers_pupils_activities_and_meetings(
    teacher_tenant: TeacherTenant,
) -> None:
    page = _client(teacher_tenant, "t.oak").get("/my-sessions/one-to-ones/new").text
    pupil_select = re.search(r'<select id="field-pupil".*?</select>', page, re.S)
    meeting_select = re.search(r'<select id="field-meeting".*?</select>', page, re.S)
    assert pupil_select is not None
    assert meeting_select is not None

    assert '<optgroup label="Oak Class">' in pupil_select.group(0)
    assert "Amelia K." in pupil_select.group(0)
    assert "Noah B." in pupil_select.group(0)
    assert "Isla M." not in page  # another school's pupil
    assert "Leo P." not in page  # another class's pupil
    assert '<option value="reading">reading</option>' in page
    assert '<option value="Talk Times">Talk Times</option>' in page
    # Upcoming meetings of this teacher, with the class's pupils invited.
    assert "Reading with Amelia, Wed 18 Nov 14:00 (invited: Amelia K.)" in meeting_select.group(0)
    assert "Oak Class maths" not in meeting_select.group(0)  # already started
    assert "Catch-up with Isla" not in meeting_select.group(0)
    # Every input has a label; a form posts its CSRF token.
    for name in re.findall(r'<(?:input|select|textarea)[^>]* id="([^"]+)"', page):
        assert f'for="{name}"' in page, name
    assert 'name="csrf_token"' in page


def test_registering_a_one_to_one_re_evaluates_and_slt_approval_resolves_it(
    teacher_tenant: TeacherTenant,
) -> None:
    """Registered: still flagged, now because SLT have not approved it (re-evaluated at once).
    Approved (by SLT, here the test): the pre-session finding turns to pass on the page."""
    client = _client(teacher_tenant, "t.oak")
    assert teacher_tenant.status("oak-1to1-soon", ONE_TO_ONE, "p1") == "fail"

    answer = client.post(
        "/my-sessions/one-to-ones/new",
        data=_form(client, **_registration_fields(teacher_tenant)),
        follow_redirects=False,
    )

    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/my-sessions/one-to-ones?done=registered"
    with teacher_tenant.web.db() as db:
        registration = db.scalars(
            select(RegistrationRow).where(
                RegistrationRow.pupil_id == teacher_tenant.person_id("p1")
            )
        ).one()
        consent = db.get(ConsentRow, registration.consent_id)
    assert consent is not None
    assert registration.status == "pending"
    assert registration.staff_id == teacher_tenant.person_id("t.oak")
    assert registration.join_url == teacher_tenant.session("oak-1to1-soon").join_url
    assert (consent.granted_by, consent.relationship, consent.method, consent.scope) == (
        "Grace K.",
        "mother",
        "email",
        "one_to_one",
    )
    assert consent.granted_at.isoformat() == "2026-11-16T00:00:00+00:00"  # midnight, GMT
    assert consent.contact_email == "grace.k@parents.example"
    [finding] = teacher_tenant.findings("oak-1to1-soon", ONE_TO_ONE)
    assert finding.status == "fail"
    assert "waiting for SLT approval" in finding.message
    listing = client.get(answer.headers["location"]).text
    assert "The one-to-one is registered. It now waits for SLT approval" in listing
    assert "Waiting for SLT approval" in listing
    assert "Given by Grace K. (mother) on Mon 16 Nov 2026, email" in listing
    assert _audit_actions(teacher_tenant, "t.oak")[-3:] == [
        "consent.created",
        "registration.created",
        "one_to_one.registered",
    ]

    teacher_tenant.approve(registration.id)
    reevaluate(teacher_tenant.web.app.state.web, [teacher_tenant.sessions["oak-1to1-soon"]])

    assert teacher_tenant.status("oak-1to1-soon", ONE_TO_ONE, "p1") == "pass"
    upcoming = _section(client.get("/my-sessions").text, "Upcoming")
    soon = upcoming[: upcoming.index("Reading with Noah")]
    assert "No problems found." in soon
    assert ">Resolved<" in soon
    assert "is covered: registered, approved, with parental consent" in soon


def test_register_problems_are_shown_by_each_field_and_nothing_is_saved(
    teacher_tenant: TeacherTenant,
) -> None:
    client = _client(teacher_tenant, "t.oak")
    registrations, consents = (
        _count(teacher_tenant, RegistrationRow),
        _count(teacher_tenant, ConsentRow),
    )
    audit_before = _count(teacher_tenant, AuditEntryRow)
    typed = "Grace <b>K.</b> \u202eright-to-left"
    fields = _registration_fields(
        teacher_tenant,
        pupil=teacher_tenant.person_id("p3"),  # not in the teacher's classes
        activity="Swimming",  # not approved
        covers="window",
        starts_at="2026-11-18T15:00",
        ends_at="2026-11-18T14:00",  # before the start
        given_by=typed,
        relationship="m" * 65,  # too long
        given_on="2026-12-01",  # in the future
        expires_on="2026-11-01",  # before the date given
        method="carrier pigeon",
        evidence_ref="",
        contact_email="not an address",
    )

    answer = client.post("/my-sessions/one-to-ones/new", data=_form(client, **fields))

    assert answer.status_code == 422
    page = answer.text
    expected = {
        "pupil": "Choose a pupil from one of your classes.",
        "activity": "Choose an activity from the list SLT approved.",
        "ends_at": "The end must be after the start.",
        "relationship": "Their relationship to the pupil can be at most 64 characters.",
        "given_on": "The date consent was given cannot be in the future.",
        "method": "Choose how consent was given.",
        "evidence_ref": "Enter an evidence reference",
        "contact_email": "Enter an e-mail address like name@example.com, or leave it empty.",
    }
    for name, message in expected.items():
        error = re.search(rf'<p class="error-message" id="error-{name}">(.*?)</p>', page, re.S)
        assert error is not None, name
        assert message in html.unescape(error.group(1)), name
        assert f'href="#field-{name}"' in page  # the summary links to the field
        # A radio group's fieldset carries the error; any other field carries its own.
        field = re.search(rf'<fieldset[^>]*aria-describedby="error-{name}"[^>]*>', page) or (
            re.search(rf'<(?:input|select|textarea)[^>]*id="field-{name}"[^>]*>', page)
        )
        assert field is not None, name
        assert f"error-{name}" in field.group(0), name
        assert 'aria-invalid="true"' in field.group(0), name
    # What was typed comes back, escaped.
    assert f'value="{html.escape(typed, quote=True).replace("&#x27;", "&#39;")}"' in page
    assert "<b>K.</b>" not in page
    assert 'value="2026-11-18T15:00"' in page
    assert _count(teacher_tenant, RegistrationRow) == registrations
    assert _count(teacher_tenant, ConsentRow) == consents
    assert _count(teacher_tenant, AuditEntryRow) == audit_before


def test_register_problems_with_expiry_and_meetings(teacher_tenant: TeacherTenant) -> None:
    client = _client(teacher_tenant, "t.oak")
    cases = [
        # expiry on or before the date given
        (
            {"given_on": "2026-11-10", "expires_on": "2026-11-10"},
            "expires_on",
            "The expiry date must be after the date consent was given.",
        ),
        # the pupil is not invited to the chosen meeting
        (
            {"pupil": teacher_tenant.person_id("p2")},
            "meeting",
            "Noah B. is not invited to this meeting.",
        ),
        # another teacher's meeting
        (
            {"meeting": teacher_tenant.sessions["elm-1to1-soon"]},
            "meeting",
            "Choose one of your Teams meetings that has not started yet.",
        ),
        ({"covers": ""}, "covers", "Choose whether this is for one Teams meeting"),
        ({"given_on": "31/02/2026"}, "given_on", "Enter the date consent was given, like"),
        (
            {"covers": "window", "starts_at": "2026-11-17T09:00", "ends_at": "2026-11-17T10:00"},
            "ends_at",
            "The end has passed",
        ),
        ({"given_by": "x" * 201}, "given_by", "at most 200 characters"),
    ]
    for overrides, name, message in cases:
        answer = client.post(
            "/my-sessions/one-to-ones/new",
            data=_form(client, **_registration_fields(teacher_tenant, **overrides)),
        )
        assert answer.status_code == 422, overrides
        error = re.search(rf'id="error-{name}">(.*?)</p>', answer.text, re.S)
        assert error is not None, (overrides, answer.text[:2000])
        assert message in html.unescape(error.group(1)), overrides


# --- withdrawing consent ----------------------------------------------------------------------


def _noah_consent(tenant: TeacherTenant) -> ConsentRow:
    with tenant.web.db() as db:
        return db.scalars(
            select(ConsentRow).where(ConsentRow.pupil_id == tenant.person_id("p2"))
        ).one()


def test_withdrawing_consent_flags_the_next_session_at_once(
    teacher_tenant: TeacherTenant,
) -> None:
    client = _client(teacher_tenant, "t.oak")
    consent = _noah_consent(teacher_tenant)
    assert teacher_tenant.status("oak-1to1-tomorrow", ONE_TO_ONE, "p2") == "pass"
    listing = client.get("/my-sessions/one-to-ones").text
    assert f'href="/my-sessions/consents/{consent.id}/withdraw"' in listing
    view = client.get(f"/my-sessions/consents/{consent.id}/withdraw").text
    assert "Sarah B. (mother)" in view
    assert "Form OTO-17" in view
    default = re.search(r'id="field-withdrawn_at"[^>]*value="([^"]+)"', view) or re.search(
        r'value="([^"]+)"[^>]*id="field-withdrawn_at"', view
    )
    assert default is not None
    assert default.group(1).startswith("2026-11-18T12:")  # now, school time

    answer = client.post(
        f"/my-sessions/consents/{consent.id}/withdraw",
        data=_form(
            client,
            withdrawn_at=default.group(1),
            told_by="Sarah B. (mother), by phone",
            note=HOSTILE_NOTE,
        ),
        follow_redirects=False,
    )

    assert answer.status_code == 303, answer.text
    assert teacher_tenant.status("oak-1to1-tomorrow", ONE_TO_ONE, "p2") == "fail"
    [finding] = teacher_tenant.findings("oak-1to1-tomorrow", ONE_TO_ONE)
    assert "parental consent was withdrawn on 18 Nov 2026 12:" in finding.message
    withdrawn = _noah_consent(teacher_tenant)
    assert withdrawn.withdrawn_at is not None
    with teacher_tenant.web.db() as db:
        row = db.scalars(
            select(ConsentWithdrawalRow).where(ConsentWithdrawalRow.consent_id == consent.id)
        ).one()
    assert row.told_by == "Sarah B. (mother), by phone"
    assert row.recorded_by == teacher_tenant.person_id("t.oak")
    assert _audit_actions(teacher_tenant, "t.oak")[-2:] == [
        "consent.changed",
        "consent.withdrawal_recorded",
    ]
    # The finding's change is the service's, tied to the teacher's request by its id.
    with teacher_tenant.web.db() as db:
        recorded = db.scalars(
            select(AuditEntryRow).where(AuditEntryRow.action == "consent.withdrawal_recorded")
        ).one()
        changed = db.scalars(
            select(AuditEntryRow).where(
                AuditEntryRow.action == "finding.changed", AuditEntryRow.run_id == recorded.run_id
            )
        ).all()
    assert [entry.actor_id for entry in changed] == ["system"]
    page = client.get(answer.headers["location"]).text
    assert "The withdrawal of consent is recorded." in page
    assert "Consent was withdrawn on Wed 18 Nov 12:" in page
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    upcoming = _section(client.get("/my-sessions").text, "Upcoming")
    tomorrow = upcoming[upcoming.index("Reading with Noah") :]
    assert ">Breach<" in tomorrow
    assert "parental consent was withdrawn on 18 Nov 2026" in tomorrow

    again = client.post(
        f"/my-sessions/consents/{consent.id}/withdraw",
        data=_form(client, withdrawn_at=default.group(1), told_by="Again"),
    )
    assert again.status_code == 422
    assert "This consent was already withdrawn on Wed 18 Nov 2026 12:" in again.text
    assert "Record withdrawal" not in again.text  # no form for a withdrawn consent


def test_withdrawal_problems(teacher_tenant: TeacherTenant) -> None:
    client = _client(teacher_tenant, "t.oak")
    # A consent of t.oak's own, not withdrawn: the module's tests share one store, and which of
    # them ran before this one (and what they withdrew) depends on how the run was split.
    consent_id = "consent-withdrawal-problems"
    with transaction(teacher_tenant.web.db) as db:
        if db.get(ConsentRow, consent_id) is None:
            save_consent(
                db,
                consent=Consent(
                    id=consent_id,
                    # Amelia, in t.oak's class (Noah's consent is the withdrawal test's).
                    pupil_id=teacher_tenant.person_id("p1"),
                    granted_by="A parent",
                    relationship="mother",
                    granted_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
                ),
                recorded_by=teacher_tenant.person_id("t.oak"),
                now=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
            )
    audit_before = _count(teacher_tenant, AuditEntryRow)

    answer = client.post(
        f"/my-sessions/consents/{consent_id}/withdraw",
        data=_form(client, withdrawn_at="2026-11-25T09:00", told_by="", note="n" * 2001),
    )

    assert answer.status_code == 422
    assert "The withdrawal cannot be in the future" in answer.text
    assert "Enter who told the school." in answer.text
    assert "The note can be at most 2000 characters." in answer.text
    assert 'value="2026-11-25T09:00"' in answer.text
    assert _count(teacher_tenant, AuditEntryRow) == audit_before
    with teacher_tenant.web.db() as db:
        consent = db.get(ConsentRow, consent_id)
    assert consent is not None
    assert consent.withdrawn_at is None


# --- context on a flagged session -------------------------------------------------------------


def test_a_teacher_adds_context_but_the_case_status_does_not_change(
    teacher_tenant: TeacherTenant,
) -> None:
    client = _client(teacher_tenant, "t.oak")
    session_id = teacher_tenant.sessions["oak-lesson-yesterday"]
    page = client.get(f"/my-sessions/sessions/{session_id}").text
    assert "Context for the DSL" in page
    with teacher_tenant.web.db() as db:
        case = db.scalars(select(CaseRow).where(CaseRow.session_id == session_id)).one_or_none()
        status_before = case.status if case is not None else "new"

    answer = client.post(
        f"/my-sessions/sessions/{session_id}/context",
        data=_form(client, text=HOSTILE_NOTE),
        follow_redirects=False,
    )

    assert answer.status_code == 303
    with teacher_tenant.web.db() as db:
        case = db.scalars(select(CaseRow).where(CaseRow.session_id == session_id)).one()
        notes = list(db.scalars(select(CaseNoteRow).where(CaseNoteRow.case_id == case.id)))
    assert case.status == status_before
    assert case.resolution is None
    assert [(note.kind, note.author_id) for note in notes] == [
        ("context", teacher_tenant.person_id("t.oak"))
    ]
    assert notes[0].text == HOSTILE_NOTE.strip()
    assert _audit_actions(teacher_tenant, "t.oak")[-1] == "case.note_added"
    shown = client.get(answer.headers["location"]).text
    assert "Your context is added." in shown
    assert "<img src=x" not in shown
    assert "&lt;img src=x onerror=alert(1)&gt; &#34;quoted&#34;" in shown
    assert "1 context note added." in client.get("/my-sessions").text

    empty = client.post(
        f"/my-sessions/sessions/{session_id}/context", data=_form(client, text="   ")
    )
    assert empty.status_code == 422
    assert "Write your note before adding it." in empty.text


def test_context_is_refused_on_a_session_with_nothing_found(
    teacher_tenant: TeacherTenant,
) -> None:
    client = _client(teacher_tenant, "t.oak")
    session_id = teacher_tenant.sessions["oak-planning"]
    notes_before = _count(teacher_tenant, CaseNoteRow)

    answer = client.post(
        f"/my-sessions/sessions/{session_id}/context", data=_form(client, text="Hello")
    )

    assert answer.status_code == 422
    assert "Nothing was found on this session to add context to." in answer.text
    assert _count(teacher_tenant, CaseNoteRow) == notes_before
    with teacher_tenant.web.db() as db:
        assert db.scalars(select(CaseRow).where(CaseRow.session_id == session_id)).first() is None
    assert client.get("/my-sessions/sessions/no-such-session").status_code == 404
