"""Exemptions: scoped to one object, in force only while granted and not expired or revoked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from remote_guard.collect.snapshot import SessionSnapshot
from remote_guard.exemptions.exemption import Exemption, ExemptionScope
from tests.rules.factory import PUPIL, PUPIL2, START, TEACHER


def _exemption(scope: ExemptionScope, **fields: object) -> Exemption:
    return Exemption(
        id="x1",
        rule_id="one_to_one_without_consent",
        scope=scope,
        reason="Reading support agreed with parents at the review meeting",
        granted_by="Mrs Head",
        granted_at=START - timedelta(days=1),
        expires_at=START + timedelta(days=30),
        **fields,  # type: ignore[arg-type]
    )


def test_pair_covers_that_pupil_with_that_teacher_only(lesson: SessionSnapshot) -> None:
    """The pupil is the finding's subject and the teacher is in the session."""
    pair = _exemption(ExemptionScope.PAIR, pupil_id=PUPIL.id, staff_id=TEACHER.id)
    rule = "one_to_one_without_consent"
    assert pair.applies(rule_id=rule, subject_key=PUPIL.id, snapshot=lesson)
    assert not pair.applies(rule_id=rule, subject_key=PUPIL2.id, snapshot=lesson)
    assert not pair.applies(rule_id="pupil_meeting_chat", subject_key=PUPIL.id, snapshot=lesson)
    other_teacher = lesson.model_copy(
        update={"organizer_id": "someone", "people": {PUPIL.id: PUPIL}}
    )
    assert not pair.applies(rule_id=rule, subject_key=PUPIL.id, snapshot=other_teacher)


def test_series_and_session_scopes(lesson: SessionSnapshot) -> None:
    """A series exemption follows the series id; a session one only that session."""
    lesson.series_id = "series-1"
    rule = "one_to_one_without_consent"
    assert _exemption(ExemptionScope.SERIES, series_id="series-1").applies(
        rule_id=rule, subject_key=PUPIL.id, snapshot=lesson
    )
    assert not _exemption(ExemptionScope.SERIES, series_id="series-2").applies(
        rule_id=rule, subject_key=PUPIL.id, snapshot=lesson
    )
    assert _exemption(ExemptionScope.SESSION, session_id=lesson.session_id).applies(
        rule_id=rule, subject_key="", snapshot=lesson
    )


def test_active_window_and_revocation() -> None:
    """Not before it is granted, not from its expiry, not once revoked."""
    item = _exemption(ExemptionScope.PERSON, pupil_id=PUPIL.id)
    assert not item.active(START - timedelta(days=2))
    assert item.active(START)
    assert not item.active(START + timedelta(days=30))
    revoked = item.model_copy(update={"revoked_at": START + timedelta(days=1)})
    assert revoked.active(START)
    assert not revoked.active(START + timedelta(days=2))


@pytest.mark.parametrize(
    ("scope", "fields", "message"),
    [
        (ExemptionScope.PAIR, {"pupil_id": "p"}, "needs staff_id"),
        (ExemptionScope.SERIES, {}, "needs series_id"),
        (ExemptionScope.PERSON, {}, "needs pupil_id or staff_id"),
    ],
)
def test_an_exemption_must_name_its_object(
    scope: ExemptionScope, fields: dict[str, str], message: str
) -> None:
    """An exemption without the object its scope needs would cover everything."""
    with pytest.raises(ValidationError, match=message):
        _exemption(scope, **fields)
