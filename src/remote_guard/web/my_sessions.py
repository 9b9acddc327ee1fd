"""What "My sessions" shows: the sessions a member of staff organises, upcoming, live and past
(the last four weeks), each with the problems found before or after it.

A problem is an open finding (fail, warn or error), shown with its rule's title, the message,
the next step and its status; an exempted one stays, marked as exempted. A finding that was
open and is no longer (a registration now covers the one-to-one, say) is listed as resolved.
The teacher's context notes on the session's case are shown with it; the DSL's own notes and
the case's review status are not (they are the DSL's record).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from remote_guard.cases.models import CaseNoteRow, CaseRow, NoteKind
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.findings.models import FindingEventRow, FindingRow
from remote_guard.rules.base import OPEN_STATUSES, Status

PAST_DAYS = 28

OPEN = frozenset(status.value for status in OPEN_STATUSES)

STATUS_LABELS = {
    Status.FAIL.value: "Breach",
    Status.WARN.value: "Warning",
    Status.ERROR.value: "Could not be checked",
    Status.PASS.value: "Resolved",
    Status.NOT_APPLICABLE.value: "Resolved",
}

KIND_LABELS = {
    "meeting": "Teams meeting",
    "channel_meeting": "Channel meeting",
    "peer_to_peer": "Teams call",
    "other_provider": "Meeting on another service",
    "direct_chat": "Chat",
}

SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2, "info": 3}


@dataclass(frozen=True)
class FindingView:
    key: str
    rule_id: str
    rule_title: str
    clause: str
    status: str
    status_label: str
    severity: str
    message: str
    next_step: str
    exempted: bool = False
    exemption_reason: str | None = None
    exemption_until: datetime | None = None
    last_changed_at: datetime | None = None


@dataclass(frozen=True)
class NoteView:
    id: int
    text: str
    created_at: datetime
    mine: bool


@dataclass
class SessionView:
    id: str
    subject: str
    kind: str
    kind_label: str
    start: datetime | None
    end: datetime | None
    phase: str  # upcoming | live | past
    school: str | None
    organizer_id: str | None
    cancelled: bool = False
    problems: list[FindingView] = field(default_factory=list)
    resolved: list[FindingView] = field(default_factory=list)
    notes: list[NoteView] = field(default_factory=list)

    @property
    def open_count(self) -> int:
        return sum(1 for problem in self.problems if not problem.exempted)


@dataclass
class MySessions:
    upcoming: list[SessionView]
    live: list[SessionView]
    past: list[SessionView]
    since: datetime

    @property
    def groups(self) -> list[tuple[str, str, list[SessionView]]]:
        """(key, heading, sessions) in the order the page shows them."""
        return [
            ("live", "Live now", self.live),
            ("upcoming", "Upcoming", self.upcoming),
            ("past", "Past four weeks", self.past),
        ]

    def all(self) -> list[SessionView]:
        return [*self.live, *self.upcoming, *self.past]


def phase_of(start: datetime | None, end: datetime | None, now: datetime) -> str:
    if start is not None and now < start:
        return "upcoming"
    if start is not None and end is not None and now < end:
        return "live"
    return "past"


def my_sessions(
    db: Session,
    user_id: str,
    *,
    now: datetime,
    titles: Mapping[str, str],
    past_days: int = PAST_DAYS,
) -> MySessions:
    """The sessions ``user_id`` organises that start from ``past_days`` ago on, grouped, each
    with its problems, resolved findings and context notes."""
    since = now - timedelta(days=past_days)
    rows = db.execute(
        select(SessionRow, SnapshotRow.data)
        .outerjoin(SnapshotRow, SnapshotRow.id == SessionRow.latest_snapshot_id)
        .where(SessionRow.organizer_id == user_id, SessionRow.scheduled_start >= since)
        .order_by(SessionRow.scheduled_start, SessionRow.id)
    ).all()
    views = [
        SessionView(
            id=row.id,
            subject=row.subject or "Untitled session",
            kind=row.kind,
            kind_label=KIND_LABELS.get(row.kind, row.kind),
            start=row.scheduled_start,
            end=row.scheduled_end,
            phase=phase_of(row.scheduled_start, row.scheduled_end, now),
            school=row.school,
            organizer_id=row.organizer_id,
            cancelled=bool((data or {}).get("is_cancelled")),
        )
        for row, data in rows
    ]
    attach_findings(db, views, titles=titles, viewer_id=user_id)
    grouped: dict[str, list[SessionView]] = defaultdict(list)
    for view in views:
        grouped[view.phase].append(view)
    return MySessions(
        upcoming=grouped["upcoming"],
        live=grouped["live"],
        past=list(reversed(grouped["past"])),
        since=since,
    )


def session_view(
    db: Session, row: SessionRow, *, now: datetime, titles: Mapping[str, str], viewer_id: str
) -> SessionView:
    """One session as "My sessions" shows it."""
    snapshot = db.get(SnapshotRow, row.latest_snapshot_id) if row.latest_snapshot_id else None
    view = SessionView(
        id=row.id,
        subject=row.subject or "Untitled session",
        kind=row.kind,
        kind_label=KIND_LABELS.get(row.kind, row.kind),
        start=row.scheduled_start,
        end=row.scheduled_end,
        phase=phase_of(row.scheduled_start, row.scheduled_end, now),
        school=row.school,
        organizer_id=row.organizer_id,
        cancelled=bool(snapshot is not None and snapshot.data.get("is_cancelled")),
    )
    attach_findings(db, [view], titles=titles, viewer_id=viewer_id)
    return view


def attach_findings(
    db: Session, views: Sequence[SessionView], *, titles: Mapping[str, str], viewer_id: str
) -> None:
    """Fill each view's problems, resolved findings and context notes (three queries)."""
    by_id = {view.id: view for view in views}
    if not by_id:
        return
    ids = sorted(by_id)
    findings = db.scalars(select(FindingRow).where(FindingRow.session_id.in_(ids))).all()
    closed_keys = [row.key for row in findings if row.status not in OPEN]
    # Which of the findings that are not open now once were: those are "resolved".
    once_open = (
        set(
            db.scalars(
                select(FindingEventRow.finding_key)
                .where(
                    FindingEventRow.finding_key.in_(closed_keys),
                    FindingEventRow.to_status.in_(sorted(OPEN)),
                )
                .distinct()
            )
        )
        if closed_keys
        else set()
    )
    for row in sorted(findings, key=_finding_order):
        view = by_id[row.session_id]
        if row.status in OPEN:
            view.problems.append(_finding_view(row, titles))
        elif row.key in once_open:
            view.resolved.append(_finding_view(row, titles))
    notes = db.execute(
        select(CaseRow.session_id, CaseNoteRow)
        .join(CaseNoteRow, CaseNoteRow.case_id == CaseRow.id)
        .where(CaseRow.session_id.in_(ids), CaseNoteRow.kind == NoteKind.CONTEXT.value)
        .order_by(CaseNoteRow.created_at, CaseNoteRow.id)
    ).all()
    for session_id, note in notes:
        by_id[session_id].notes.append(
            NoteView(
                id=note.id,
                text=note.text,
                created_at=note.created_at,
                mine=note.author_id == viewer_id,
            )
        )


def _finding_order(row: FindingRow) -> tuple[bool, bool, int, str, str]:
    return (
        row.status not in OPEN,
        row.exemption is not None,
        SEVERITY_RANK.get(row.severity, 9),
        row.rule_id,
        row.subject_key,
    )


def _finding_view(row: FindingRow, titles: Mapping[str, str]) -> FindingView:
    exemption = row.exemption or {}
    until = exemption.get("expires_at")
    return FindingView(
        key=row.key,
        rule_id=row.rule_id,
        rule_title=titles.get(row.rule_id, row.rule_id.replace("_", " ").capitalize()),
        clause=f"{row.clause_id} v{row.clause_version}",
        status=row.status,
        status_label=STATUS_LABELS.get(row.status, row.status),
        severity=row.severity,
        message=row.message,
        next_step=row.next_step,
        exempted=row.exemption is not None,
        exemption_reason=str(exemption["reason"]) if "reason" in exemption else None,
        exemption_until=datetime.fromisoformat(until) if isinstance(until, str) else None,
        last_changed_at=row.last_changed_at,
    )
