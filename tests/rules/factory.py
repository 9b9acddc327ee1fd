"""People and times the rule tests share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from remote_guard.collect.snapshot import (
    Interval,
    Person,
    PersonKind,
    Presence,
    Role,
)

START = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
END = START + timedelta(minutes=30)
TEACHER = Person(id="teacher", display_name="Ms Teacher", kind=PersonKind.STAFF)
COTEACHER = Person(id="coteacher", display_name="Mr Assistant", kind=PersonKind.STAFF)
SLT = Person(id="slt", display_name="Mrs Head", kind=PersonKind.STAFF, roles=frozenset({Role.SLT}))
PUPIL = Person(id="pupil", display_name="Amelia K.", kind=PersonKind.PUPIL)
PUPIL2 = Person(id="pupil2", display_name="Noah B.", kind=PersonKind.PUPIL)
GUEST = Person(id="anon:1", display_name="Parent", kind=PersonKind.ANONYMOUS)


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def presence(person: Person, *spans: tuple[float, float]) -> Presence:
    return Presence(
        person_id=person.id,
        intervals=[Interval(start=at(a), end=at(b)) for a, b in spans],
        source="attendance_report",
    )
