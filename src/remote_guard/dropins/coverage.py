"""Coverage of monitoring drop-ins this half-term: which one-to-one sessions and which teachers
SLT have visited, and who has not been visited yet.

The period is the half-term today falls in, from ``[[school_day.terms]]``. Each configured entry
is a term or a half-term; one longer than ``SPLIT_WEEKS`` weeks is taken to be a whole term and
split into two halves, the second starting on the Monday on or after its middle day.
Between terms the half-term that ended last is shown; with no terms configured, or before the
first one, the last six weeks.

Only sessions that have started by now count (an upcoming session cannot have been visited).
A **one-to-one session** is one where the one-to-one rule found a member of staff alone with a
pupil, or planned to be (a finding of ``one_to_one_without_consent`` about a pupil, whatever
its status), or one a one-to-one registration (pending or approved) is for. A **teacher** is
a member of staff who organised a session with pupils expected. A session or teacher is
**visited** when an SLT member's drop-in into it (into one of theirs) is recorded as done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.collect.snapshot import PersonKind, SessionSnapshot
from remote_guard.consent.models import RegistrationRow
from remote_guard.consent.registers import ApprovalStatus, Registration
from remote_guard.dropins.board import teacher_name_of
from remote_guard.dropins.models import DropInRow, DropInStatus
from remote_guard.findings.models import FindingRow
from remote_guard.rules._people import expected_pupils
from remote_guard.rules.base import Status
from remote_guard.settings import TermSettings

ONE_TO_ONE_RULE = "one_to_one_without_consent"
SPLIT_WEEKS = 9
FALLBACK_WEEKS = 6
# Findings of the one-to-one rule that mean someone was (or was to be) alone with a pupil.
_ONE_TO_ONE_STATUSES = (Status.FAIL.value, Status.WARN.value, Status.PASS.value)


@dataclass(frozen=True)
class Period:
    """The dates coverage is counted over, first and last day inclusive (school local dates)."""

    start: date
    end: date
    label: str
    from_terms: bool  # False: the last six weeks, because no configured term applies

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The period as UTC instants: [midnight of the first day, midnight after the last)."""
        start = datetime.combine(self.start, time(0), tzinfo=zone).astimezone(UTC)
        end = datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=zone)
        return start, end.astimezone(UTC)


def _halves(term: TermSettings) -> list[tuple[date, date, str]]:
    length = (term.end - term.start).days + 1
    if length <= SPLIT_WEEKS * 7:
        return [(term.start, term.end, "half-term")]
    # The second half starts on the Monday on or after the middle day, as half-terms do.
    middle = term.start + timedelta(days=length // 2)
    second = middle + timedelta(days=(7 - middle.weekday()) % 7)
    return [
        (term.start, second - timedelta(days=1), "first half of the term"),
        (second, term.end, "second half of the term"),
    ]


def current_period(terms: Sequence[TermSettings], *, today: date) -> Period:
    """The half-term ``today`` is in (or the last one ended), else the last six weeks."""
    halves = sorted((half for term in terms for half in _halves(term)), key=lambda half: half[0])
    current = next((half for half in halves if half[0] <= today <= half[1]), None)
    if current is None:
        ended = [half for half in halves if half[1] < today]
        current = ended[-1] if ended else None
    if current is None:
        start = today - timedelta(weeks=FALLBACK_WEEKS) + timedelta(days=1)
        return Period(start, today, "the last 6 weeks", from_terms=False)
    start, end, kind = current
    return Period(start, end, f"this {kind} ({start:%-d %b} to {end:%-d %b %Y})", True)


@dataclass
class SessionCoverage:
    session_id: str
    subject: str
    kind: str  # a SessionKind value: a call or chat has no subject to show
    teacher_id: str | None
    teacher_name: str
    school: str | None
    starts_at: datetime | None
    visited: bool


@dataclass
class TeacherCoverage:
    teacher_id: str
    name: str
    school: str | None
    sessions: int
    last_session_at: datetime | None
    visited: bool


@dataclass
class Coverage:
    period: Period
    one_to_ones: list[SessionCoverage] = field(default_factory=list)
    teachers: list[TeacherCoverage] = field(default_factory=list)

    @property
    def one_to_ones_visited(self) -> int:
        return sum(1 for item in self.one_to_ones if item.visited)

    @property
    def teachers_visited(self) -> int:
        return sum(1 for item in self.teachers if item.visited)

    @staticmethod
    def share(part: int, whole: int) -> int | None:
        """``part`` of ``whole`` as a whole percentage, or None when there is nothing to count
        (no sessions is not 100% covered)."""
        return round(100 * part / whole) if whole else None

    @property
    def one_to_one_share(self) -> int | None:
        return self.share(self.one_to_ones_visited, len(self.one_to_ones))

    @property
    def teacher_share(self) -> int | None:
        return self.share(self.teachers_visited, len(self.teachers))


def _registered(
    registrations: list[Registration], session: SessionRow, snapshot: SessionSnapshot
) -> bool:
    """Whether a pending or approved registration is for this session: by its join link, or
    (a registration for a window of time) by the organiser, a pupil of the session and the
    session's start."""
    pupils = expected_pupils(snapshot) | snapshot.ids_of(PersonKind.PUPIL)
    for registration in registrations:
        if registration.status is ApprovalStatus.DECLINED:
            continue
        covers = registration.covers(
            staff_id=registration.staff_id,
            pupil_id=registration.pupil_id,
            join_url=session.join_url,
            start=session.scheduled_start,
        )
        if registration.join_url is not None and session.join_url is not None:
            if covers:
                return True
        elif (
            covers
            and registration.staff_id == session.organizer_id
            and registration.pupil_id in pupils
        ):
            return True
    return False


def coverage(
    db: Session,
    *,
    terms: Sequence[TermSettings],
    timezone: str,
    now: datetime,
    visible: Callable[[str | None], bool],
    school: str | None = None,
) -> Coverage:
    """Coverage for the current period, limited to the schools ``visible`` allows (and to
    ``school`` if given)."""
    zone = ZoneInfo(timezone)
    period = current_period(terms, today=now.astimezone(zone).date())
    start, end = period.bounds(zone)
    query = (
        select(SessionRow, SnapshotRow.data)
        .join(SnapshotRow, SnapshotRow.id == SessionRow.latest_snapshot_id)
        .where(
            SessionRow.scheduled_start >= start,
            SessionRow.scheduled_start < min(end, now),
        )
        .order_by(SessionRow.scheduled_start, SessionRow.id)
    )
    if school is not None:
        query = query.where(SessionRow.school == school)
    sessions: list[tuple[SessionRow, SessionSnapshot]] = []
    for session, data in db.execute(query).all():
        if not visible(session.school):
            continue
        snapshot = SessionSnapshot.model_validate(data)
        if not snapshot.is_cancelled:
            sessions.append((session, snapshot))
    ids = [session.id for session, _ in sessions]
    one_to_one_ids = set(
        db.scalars(
            select(FindingRow.session_id).where(
                FindingRow.session_id.in_(ids),
                FindingRow.rule_id == ONE_TO_ONE_RULE,
                FindingRow.subject_key != "",
                FindingRow.status.in_(_ONE_TO_ONE_STATUSES),
            )
        )
    )
    registrations = [
        Registration(
            id=row.id,
            staff_id=row.staff_id,
            pupil_id=row.pupil_id,
            activity=row.activity,
            join_url=row.join_url,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            status=ApprovalStatus(row.status),
        )
        for row in db.scalars(select(RegistrationRow))
    ]
    visited_ids = set(
        db.scalars(
            select(DropInRow.session_id).where(
                DropInRow.session_id.in_(ids), DropInRow.status == DropInStatus.DONE.value
            )
        )
    )
    result = Coverage(period=period)
    teachers: dict[str, TeacherCoverage] = {}
    for session, snapshot in sessions:
        name = teacher_name_of(session, snapshot)
        visited = session.id in visited_ids
        if session.id in one_to_one_ids or _registered(registrations, session, snapshot):
            result.one_to_ones.append(
                SessionCoverage(
                    session_id=session.id,
                    subject=session.subject or "",
                    kind=snapshot.kind.value,
                    teacher_id=session.organizer_id,
                    teacher_name=name,
                    school=session.school,
                    starts_at=session.scheduled_start,
                    visited=visited,
                )
            )
        organizer = snapshot.people.get(session.organizer_id or "")
        if organizer is None or organizer.kind is not PersonKind.STAFF:
            continue
        if not expected_pupils(snapshot):
            continue
        teacher = teachers.setdefault(
            organizer.id,
            TeacherCoverage(
                teacher_id=organizer.id,
                name=name,
                school=session.school,
                sessions=0,
                last_session_at=None,
                visited=False,
            ),
        )
        teacher.sessions += 1
        teacher.last_session_at = session.scheduled_start
        teacher.visited = teacher.visited or visited
    result.teachers = sorted(teachers.values(), key=lambda t: (t.name.casefold(), t.teacher_id))
    return result
