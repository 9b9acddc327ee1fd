"""Subject access: every record naming the person, and nothing identifying anyone else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from remote_guard import audit
from remote_guard.collect.models import SnapshotRow
from remote_guard.consent.registers import ApprovalStatus, Consent, Registration
from remote_guard.consent.service import save_consent, save_registration
from remote_guard.exemptions.exemption import Exemption, ExemptionScope
from remote_guard.exemptions.service import save_exemption
from remote_guard.findings.models import FindingRow
from remote_guard.poll.service import run_poll
from remote_guard.privacy.subject_access import (
    WITHHELD,
    SubjectAccessError,
    build,
    write_export,
)
from remote_guard.store.db import transaction
from tests.e2e.conftest import Running, school, start

NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Running]:
    """The e2e school polled once, with a consent, a registration and an exemption for p1."""
    for running in start(
        school(), tmp_path_factory.mktemp("sar"), database_url=module_database_url
    ):
        assert run_poll(running.poller).status == "ok"
        pupil, teacher = running.scenario.person_id("p1"), running.scenario.person_id("t.jones")
        other = running.scenario.person_id("p2")
        with transaction(running.poller.db) as session:
            for consent_id, who in (("consent-p1", pupil), ("consent-p2", other)):
                save_consent(
                    session,
                    consent=Consent(
                        id=consent_id,
                        pupil_id=who,
                        granted_by="Mrs Kowalski",
                        relationship="mother",
                        contact_email="kowalski@family.example",
                        granted_at=NOW - timedelta(days=3),
                    ),
                    recorded_by=teacher,
                    now=NOW,
                )
            save_registration(
                session,
                registration=Registration(
                    id="registration-p1",
                    staff_id=teacher,
                    pupil_id=pupil,
                    activity="reading catch-up",
                    status=ApprovalStatus.APPROVED,
                    approved_by=running.scenario.person_id("h.head"),
                    approved_at=NOW,
                ),
                consent_id="consent-p1",
                recorded_by=teacher,
                now=NOW,
            )
            with audit.acting_as(audit.Actor(id=running.scenario.person_id("h.head"), role="dsl")):
                save_exemption(
                    session,
                    Exemption(
                        id="exemption-p1",
                        rule_id="one_to_one_without_consent",
                        scope=ExemptionScope.PAIR,
                        pupil_id=pupil,
                        staff_id=teacher,
                        reason="Reading catch-up agreed with Mrs Jones and the family",
                        granted_by="Ms Head",
                        granted_at=NOW,
                        expires_at=NOW + timedelta(days=30),
                    ),
                )
        yield running


def _others(running: Running, me: str) -> list[str]:
    """Every id, name and e-mail address of someone other than ``me`` that the store holds."""
    found: set[str] = set()
    with running.poller.db() as session:
        for data in session.scalars(select(SnapshotRow.data)):
            for person_id, person in (data.get("people") or {}).items():
                if person_id == me:
                    continue
                found.add(person_id)
                found.update(v for v in (person.get("display_name"), person.get("email")) if v)
    found.update(running.scenario.person_id(p.key) for p in running.scenario.people)
    found.discard(me)
    return sorted(found)


def _leaks(data: dict[str, Any], others: list[str], own_names: list[str]) -> list[str]:
    text = json.dumps(data, ensure_ascii=False)
    for own in own_names:
        text = text.replace(own, "")  # "Pupil 1" must not hide "Pupil 12"; remove own first
    return [other for other in others if other in text and other not in own_names]


@pytest.mark.e2e
def test_pupil_export_holds_their_records_and_nobody_elses(polled: Running) -> None:
    """p1's export: the lesson they were in (not the other class's), the findings naming them,
    their consent (the parent's name withheld), the registration and exemption about them and
    the audit entries for all of these; no other person's id, name or address anywhere."""
    me = polled.scenario.person_id("p1")
    with polled.poller.db() as session:
        data = build(session, me, now=NOW)
        naming = {
            row.key
            for row in session.scalars(select(FindingRow))
            if row.subject_key == me or me in json.dumps(row.evidence)
        }

    assert [s["subject"] for s in data["sessions"]] == ["Year 4 reading"]
    part = data["sessions"][0]["snapshots"][-1]
    assert part["identity"]["display_name"] == "Pupil 1"
    assert part["presence"]
    assert part["invited"] is True
    assert {p["who"] for p in part["participants"]} >= {"you", "[other person 1]"}
    assert {f["finding"] for f in data["findings"]} == naming
    assert any(
        f["rule"] == "one_to_one_without_consent" and f["about"] == "you" for f in data["findings"]
    )
    (consent,) = data["consents"]
    assert consent["consent"] == "consent-p1"
    assert consent["granted_by"] == consent["contact_email"] == "[withheld: another person]"
    assert [r["registration"] for r in data["registrations"]] == ["registration-p1"]
    assert data["registrations"][0]["staff"].startswith("[other person")
    (exemption,) = data["exemptions"]
    assert exemption["granted_by"] == "[withheld: another person]"
    assert "Mrs Jones" not in exemption["reason"]
    actions = {(e["action"], e["object_id"]) for e in data["audit_entries"]}
    assert ("consent.created", "consent-p1") in actions
    assert ("consent.created", "consent-p2") not in actions
    assert ("exemption.created", "exemption-p1") in actions
    assert {key for action, key in actions if action == "finding.created"} == naming

    assert _leaks(data, _others(polled, me), data["names_held"]) == []


@pytest.mark.e2e
def test_staff_export_replaces_pupils(polled: Running) -> None:
    """Mrs Jones's export holds the lessons she organised, with every pupil a placeholder."""
    me = polled.scenario.person_id("t.jones")
    with polled.poller.db() as session:
        data = build(session, me, now=NOW)

    assert [s["subject"] for s in data["sessions"]] == ["Year 4 reading"]
    assert data["sessions"][0]["snapshots"][-1]["organiser"] is True
    assert data["findings"], "the lesson's findings name its organiser"
    assert _leaks(data, _others(polled, me), data["names_held"]) == []


@pytest.mark.e2e
def test_export_files_are_written(polled: Running, tmp_path: Path) -> None:
    """The JSON and the readable HTML page are written; the page shows no one else's name."""
    me = polled.scenario.person_id("p1")
    with polled.poller.db() as session:
        written = write_export(session, me, tmp_path, now=NOW)

    data = json.loads(written.json_path.read_text(encoding="utf-8"))
    assert data["person_id"] == me
    assert written.counts["sessions"] == 1
    page = written.html_path.read_text(encoding="utf-8")
    assert "Pupil 1" in page
    assert "Year 4 reading" in page
    for other in ("Mrs Jones", "Pupil 2", "Ms Head", "Mrs Kowalski", "kowalski@family.example"):
        assert other not in page


def test_a_short_id_is_refused(tmp_path: Path) -> None:
    """An id too short to be a person's (it would match half the store) is refused."""
    with pytest.raises(SubjectAccessError, match="not a person id"):
        build(None, "p1", now=NOW)  # type: ignore[arg-type]


def test_reviews_and_withdrawals_are_in_the_export_with_others_hidden(polled: Running) -> None:
    """The DSL's review of p1's lesson (its notes, other pupils' names replaced) and the record
    of the withdrawal of p1's consent (who told the school withheld) are in p1's export."""
    from remote_guard.cases.service import add_note, open_or_get_case
    from remote_guard.one_to_ones.models import ConsentWithdrawalRow

    me = polled.scenario.person_id("p1")
    dsl = audit.Actor(id="dsl-user", role="dsl")
    with polled.poller.db() as session:
        lesson = next(s["session_id"] for s in build(session, me, now=NOW)["sessions"])
    with transaction(polled.poller.db) as session:
        case = open_or_get_case(session, lesson, now=NOW, by=dsl)
        add_note(session, case, text="Spoke to Pupil 2 and Pupil 1's mother.", by=dsl, now=NOW)
        session.add(
            ConsentWithdrawalRow(
                id="withdrawal-p1",
                consent_id="consent-p1",
                withdrawn_at=NOW,
                told_by="Mrs Kowalski",
                note="By phone",
                recorded_by=polled.scenario.person_id("t.jones"),
                recorded_at=NOW,
            )
        )
    with polled.poller.db() as session:
        data = build(session, me, now=NOW)
    (review,) = [c for c in data["cases"] if c["session_id"] == lesson]
    (note,) = review["notes"]
    assert "Pupil 2" not in note["text"]
    assert "Pupil 1's mother" in note["text"]
    (consent,) = [c for c in data["consents"] if c["consent"] == "consent-p1"]
    (withdrawal,) = consent["withdrawals"]
    assert withdrawal["told_by"] == WITHHELD
    assert withdrawal["note"] == "By phone"


@pytest.mark.e2e
def test_live_records_are_in_the_export_with_others_hidden(polled: Running) -> None:
    """What the live notifications recorded of p1 (a stay in a live call, a live chat post, a
    live alert to SLT naming p1 and the teacher) is in p1's export, the teacher a placeholder;
    another pupil's live stay is not."""
    from remote_guard.subscriptions.models import (
        LiveAlertRow,
        LiveChatMessageRow,
        LiveParticipantRow,
    )

    me, teacher = polled.scenario.person_id("p1"), polled.scenario.person_id("t.jones")
    other = polled.scenario.person_id("p2")
    with polled.poller.db() as session:
        lesson = next(s["session_id"] for s in build(session, me, now=NOW)["sessions"])
    with polled.poller.db() as session:
        for n, who in enumerate((me, other, teacher)):
            session.add(
                LiveParticipantRow(
                    session_id=lesson,
                    participant_id=f"participant-{n}",
                    person_id=who,
                    kind="pupil",
                    display_name=f"stay {n}",
                    joined_at=NOW - timedelta(minutes=10 - n),
                    complete_call=True,
                )
            )
        session.add(
            LiveChatMessageRow(
                session_id=lesson,
                message_id="live-message-1",
                thread_id="19:meeting@thread.v2",
                sender_id=me,
                sender_name="Pupil 1",
                created_at=NOW - timedelta(minutes=5),
                received_at=NOW - timedelta(minutes=5),
            )
        )
        session.add(
            LiveAlertRow(
                id="live-alert-1",
                session_id=lesson,
                staff_id=teacher,
                pupil_id=me,
                reason="Mrs Jones is alone with Pupil 1 and no registration covers it",
                raised_at=NOW - timedelta(minutes=4),
            )
        )
        session.flush()
        data = build(session, me, now=NOW)
        session.rollback()  # the module's other tests see the store as the fixture left it

    assert [stay["display_name"] for stay in data["live_presence"]] == ["stay 0"]
    assert [post["message_id"] for post in data["live_chat_posts"]] == ["live-message-1"]
    (alert,) = data["live_alerts"]
    assert alert["pupil_id"] == me
    assert alert["staff_id"].startswith("[other person")
    assert "Mrs Jones" not in alert["reason"]
    assert "Pupil 1" in alert["reason"]
    assert _leaks(data, _others(polled, me), data["names_held"]) == []
