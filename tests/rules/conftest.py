"""A known-good session to start rule tests from: each test changes one thing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remote_guard.collect.snapshot import SessionKind, SessionSnapshot
from tests.rules.factory import COTEACHER, END, GUEST, PUPIL, PUPIL2, SLT, START, TEACHER, presence


@pytest.fixture
def lesson() -> SessionSnapshot:
    """An ended private Teams meeting: a teacher and two pupils present throughout."""
    return SessionSnapshot(
        session_id="mtg_lesson",
        kind=SessionKind.MEETING,
        subject="Year 3 maths",
        organizer_id=TEACHER.id,
        scheduled_start=START,
        scheduled_end=END,
        join_url="https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0",
        invitee_ids=[PUPIL.id, PUPIL2.id],
        people={p.id: p for p in (TEACHER, COTEACHER, SLT, PUPIL, PUPIL2, GUEST)},
        presence=[presence(TEACHER, (0, 30)), presence(PUPIL, (0, 30)), presence(PUPIL2, (0, 30))],
        chat=[],
        recordings=[],
        collected_at=END + timedelta(hours=1),
    )
