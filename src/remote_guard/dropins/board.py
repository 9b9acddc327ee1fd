"""The SLT board: live and upcoming sessions from the store, to monitor and drop in on.

Each row is built from the stored session and its latest snapshot (no Graph call): subject,
teacher, times, how many pupils are expected, how many findings are open, and the Teams join
link SLT use to drop in. Cancelled sessions, chats and calls (which have no meeting to join)
are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from remote_guard.collect.collector import TEAMS_JOIN
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.collect.snapshot import SessionKind, SessionPhase, SessionSnapshot
from remote_guard.dropins.models import DropInRow, DropInStatus
from remote_guard.findings.models import FindingRow
from remote_guard.rules._people import expected_pupils
from remote_guard.rules.base import OPEN_STATUSES

# Sessions further ahead than this are not on the board.
HORIZON = timedelta(days=7)
_NOT_ON_BOARD = frozenset({SessionKind.DIRECT_CHAT, SessionKind.PEER_TO_PEER})
_OPEN = tuple(sorted(status.value for status in OPEN_STATUSES))


@dataclass(frozen=True)
class BoardRow:
    session_id: str
    subject: str
    kind: str
    school: str | None
    organizer_id: str | None
    teacher_name: str
    starts_at: datetime | None
    ends_at: datetime | None
    live: bool
    pupils_expected: int
    open_findings: int
    join_url: str | None  # a Teams join link, or None (another provider, or none at all)
    other_provider: bool
    dropin_ids: tuple[str, ...] = field(default=())  # this SLT member's scheduled drop-ins


def teacher_name_of(session: SessionRow, snapshot: SessionSnapshot | None) -> str:
    """The organiser's display name as the snapshot knows it, or "" when not known."""
    if snapshot is None or session.organizer_id is None:
        return ""
    person = snapshot.people.get(session.organizer_id)
    return person.display_name if person is not None else ""


def teams_join_url(url: str | None) -> str | None:
    """``url`` if it is a Teams meeting link (the only kind the board offers to join)."""
    return url if url and TEAMS_JOIN.match(url) else None


def board_rows(
    db: Session,
    *,
    now: datetime,
    visible: Callable[[str | None], bool],
    school: str | None = None,
    slt_user_id: str | None = None,
    horizon: timedelta = HORIZON,
) -> list[BoardRow]:
    """Live sessions, then upcoming ones up to ``horizon`` ahead, soonest first; only those
    whose school ``visible`` allows (and only ``school`` if given)."""
    query = (
        select(SessionRow, SnapshotRow.data)
        .join(SnapshotRow, SnapshotRow.id == SessionRow.latest_snapshot_id)
        .where(
            SessionRow.scheduled_start.is_not(None),
            SessionRow.scheduled_start < now + horizon,
            or_(SessionRow.scheduled_end.is_(None), SessionRow.scheduled_end > now),
        )
        .order_by(SessionRow.scheduled_start, SessionRow.id)
    )
    if school is not None:
        query = query.where(SessionRow.school == school)
    candidates: list[tuple[SessionRow, SessionSnapshot]] = []
    for session, data in db.execute(query).all():
        if not visible(session.school):
            continue
        snapshot = SessionSnapshot.model_validate(data)
        if snapshot.is_cancelled or snapshot.kind in _NOT_ON_BOARD:
            continue
        if snapshot.phase(now) is SessionPhase.ENDED:
            continue
        candidates.append((session, snapshot))
    ids = [session.id for session, _ in candidates]
    open_counts = dict(
        db.execute(
            select(FindingRow.session_id, func.count())
            .where(
                FindingRow.session_id.in_(ids),
                FindingRow.status.in_(_OPEN),
                FindingRow.exemption.is_(None),
            )
            .group_by(FindingRow.session_id)
        ).all()
    )
    mine: dict[str, list[str]] = {}
    if slt_user_id is not None and ids:
        for dropin in db.scalars(
            select(DropInRow).where(
                DropInRow.session_id.in_(ids),
                DropInRow.slt_user_id == slt_user_id,
                DropInRow.status == DropInStatus.SCHEDULED.value,
            )
        ):
            mine.setdefault(dropin.session_id, []).append(dropin.id)
    rows = [
        BoardRow(
            session_id=session.id,
            subject=session.subject or snapshot.subject or "",
            kind=snapshot.kind.value,
            school=session.school,
            organizer_id=session.organizer_id,
            teacher_name=teacher_name_of(session, snapshot),
            starts_at=snapshot.actual_start or session.scheduled_start,
            ends_at=session.scheduled_end,
            live=snapshot.phase(now) is SessionPhase.LIVE,
            pupils_expected=len(expected_pupils(snapshot)),
            open_findings=int(open_counts.get(session.id, 0)),
            join_url=teams_join_url(session.join_url),
            other_provider=snapshot.kind is SessionKind.OTHER_PROVIDER,
            dropin_ids=tuple(mine.get(session.id, ())),
        )
        for session, snapshot in candidates
    ]
    # Live first (the ones SLT can join now), then upcoming, each soonest first.
    return sorted(rows, key=lambda row: (not row.live, row.starts_at or now, row.session_id))
