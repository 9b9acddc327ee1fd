"""What SLT do, shared by their pages (``routes/slt.py``) and the JSON API (``routes/slt_api.py``):
each function checks access with ``web.access``, makes the change and its audit entries in one
transaction through the domain services, and re-evaluates the sessions a decision affects.

Functions raise ``HTTPException`` 404 for an unknown object and 403 (``auth.deny``) for one the
user may not touch; the domain's own errors (``ApprovalError``, ``DropInError``) say what was
wrong in words the user can act on, and the caller shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import NoReturn
from zoneinfo import ZoneInfo

from fastapi import HTTPException

from remote_guard.collect.models import SessionRow
from remote_guard.consent import approvals
from remote_guard.consent.approvals import ApprovalItem
from remote_guard.consent.models import ApprovedActivityRow, RegistrationRow
from remote_guard.consent.registers import ApprovalStatus
from remote_guard.dropins import service as dropins
from remote_guard.dropins.board import BoardRow, board_rows, teacher_name_of, teams_join_url
from remote_guard.dropins.coverage import Coverage, coverage
from remote_guard.dropins.models import DropInOutcome, DropInRow
from remote_guard.dropins.service import CalendarResult, DropInError
from remote_guard.one_to_ones.service import REEVALUATE_DAYS, affected_sessions
from remote_guard.store.db import transaction
from remote_guard.web import access, audit_log
from remote_guard.web.access import User
from remote_guard.web.audit_log import actor_for
from remote_guard.web.auth import deny
from remote_guard.web.context import WebContext
from remote_guard.web.evaluation import reevaluate


def not_found() -> NoReturn:
    """Raises: HTTPException: always, with status 404."""
    raise HTTPException(status_code=404)


def names(web: WebContext) -> Mapping[str, str]:
    """Person id -> display name, from the roster (the configured groups)."""
    return web.people.roster().names


def school_of(web: WebContext, person_id: str) -> str | None:
    """The ``[[schools]]`` key of a person, or None (no federation, or in none or several)."""
    keys = [key for key, ids in web.people.roster().school_ids.items() if person_id in ids]
    return keys[0] if len(keys) == 1 else None


def school_filter(user: User, school: str | None) -> str | None:
    """The school a list is narrowed to, if the user may see it.

    Raises:
        HTTPException: 403, the user may not see that school (or it does not exist).
    """
    if not school:
        return None
    if user.federation and school not in user.federation:
        deny()
    if not access.can_see_school(user, school):
        deny()
    return school


def visible_school_keys(web: WebContext, user: User) -> list[str]:
    """The schools offered in a filter: those the user sees, in the configured order."""
    allowed = access.visible_schools(user)
    return [key for key in web.school_names if allowed is None or key in allowed]


# --- one-to-one approvals --------------------------------------------------------------------


@dataclass(frozen=True)
class Approvals:
    pending: list[ApprovalItem]
    decided: list[ApprovalItem]


def list_approvals(web: WebContext, user: User) -> Approvals:
    """The registrations of the pupils of the user's schools: waiting ones, then decided."""
    with web.db() as db:
        items = approvals.list_registrations(db)
    visible = [
        item
        for item in items
        if access.can_see_registration(user, school_of(web, item.row.pupil_id))
    ]
    pending = [item for item in visible if item.row.status == ApprovalStatus.PENDING.value]
    decided = [item for item in visible if item.row.status != ApprovalStatus.PENDING.value]
    decided.sort(key=lambda item: item.row.approved_at or item.row.recorded_at, reverse=True)
    return Approvals(pending=pending, decided=decided)


def record_approvals_viewed(web: WebContext, found: Approvals) -> None:
    """Audit that the user opened the registrations (pupils' names and their parents' consent)
    shown to them.

    Raises:
        AuditError: the audit trail cannot be written.
    """
    shown = [item.row.id for item in found.pending + found.decided]
    with transaction(web.db) as db:
        audit_log.record_view(
            db, object_type="registrations", object_id="approvals", detail={"shown": shown}
        )


def may_decide(web: WebContext, user: User, row: RegistrationRow) -> bool:
    return access.can_decide_registration(
        user, staff_id=row.staff_id, school=school_of(web, row.pupil_id)
    )


def decide_registration(
    web: WebContext, user: User, registration_id: str, *, approve: bool, reason: str | None
) -> RegistrationRow:
    """Approve or decline a registration, then re-evaluate the sessions it is for at once.

    Raises:
        HTTPException: 404 no such registration; 403 the user may not decide it.
        ApprovalError: the decision is not allowed (says why).
    """
    now = web.clock()
    with transaction(web.db) as db:
        row = approvals.get_registration(db, registration_id)
        if row is None or not access.can_see_registration(user, school_of(web, row.pupil_id)):
            not_found()
        if not may_decide(web, user, row):
            deny()
        approvals.decide(db, row, approve=approve, reason=reason, by=actor_for(user), now=now)
        affected = affected_sessions(
            db,
            pupil_id=row.pupil_id,
            staff_ids=[row.staff_id],
            join_urls=[row.join_url] if row.join_url else [],
            since=now - timedelta(days=REEVALUATE_DAYS),
        )
    reevaluate(web, affected)
    return row


# --- approved activities ---------------------------------------------------------------------


def list_activities(web: WebContext) -> list[ApprovedActivityRow]:
    with web.db() as db:
        return approvals.list_activities(db)


def add_activity(web: WebContext, user: User, name: str) -> ApprovedActivityRow:
    """Raises: ApprovalError: the name is empty, too long, or on the list already."""
    with transaction(web.db) as db:
        return approvals.add_activity(db, name=name, by=actor_for(user), now=web.clock())


def retire_activity(web: WebContext, user: User, name: str) -> ApprovedActivityRow:
    """Retire an activity from now on. No session is re-evaluated: retiring changes only
    sessions that start later, which the poll evaluates when they come.

    Raises:
        ApprovalError: no such activity, or retired already.
    """
    with transaction(web.db) as db:
        return approvals.retire_activity(db, name=name, by=actor_for(user), now=web.clock())


# --- the board and drop-ins --------------------------------------------------------------------


def board(web: WebContext, user: User, school: str | None) -> list[BoardRow]:
    with web.db() as db:
        return board_rows(
            db,
            now=web.clock(),
            visible=lambda key: access.can_see_school(user, key),
            school=school_filter(user, school),
            slt_user_id=user.id,
        )


def session_for_drop_in(web: WebContext, user: User, session_id: str) -> SessionRow:
    """The session a drop-in is scheduled into.

    Raises:
        HTTPException: 404 no such session (or not one the user may see); 403 the user may
            see it but not drop in (their own session).
    """
    with web.db() as db:
        session = db.get(SessionRow, session_id)
    if session is None or not access.can_see_session(user, session):
        not_found()
    if not access.can_schedule_drop_in(user, session):
        deny()
    return session


def local_start(web: WebContext, session: SessionRow, clock_time: time | None) -> datetime | None:
    """``clock_time`` (school local time) on the day the session starts, as UTC."""
    if clock_time is None or session.scheduled_start is None:
        return None
    zone = ZoneInfo(web.settings.school_day.timezone)
    day: date = session.scheduled_start.astimezone(zone).date()
    return datetime.combine(day, clock_time, tzinfo=zone)


def schedule_drop_in(
    web: WebContext,
    user: User,
    session_id: str,
    *,
    starts_at: datetime | None = None,
    minutes: int | None = None,
) -> CalendarResult:
    """Schedule a drop-in and put it in the SLT member's own calendar.

    Raises:
        HTTPException: 404 no such session; 403 not the user's to drop in on.
        DropInError: the times are not possible (says why).
    """
    session = session_for_drop_in(web, user, session_id)
    by = actor_for(user)
    now = web.clock()
    with transaction(web.db) as db:
        stored = db.get(SessionRow, session.id)
        if stored is None:
            not_found()
        row = dropins.schedule(
            db,
            session=stored,
            slt_user_id=user.id,
            starts_at=starts_at,
            minutes=minutes,
            by=by,
            now=now,
        )
    return dropins.put_in_calendar(
        web.db,
        web.graph,
        dropin_id=row.id,
        teacher_name=teacher_name_of,
        timezone=web.settings.school_day.timezone,
        by=by,
        now=now,
    )


@dataclass(frozen=True)
class DropInView:
    row: DropInRow
    session: SessionRow | None
    teacher_name: str
    slt_name: str
    join_url: str | None  # the session's Teams join link, if it has one


def _view(web: WebContext, row: DropInRow, session: SessionRow | None, teacher: str) -> DropInView:
    return DropInView(
        row=row,
        session=session,
        teacher_name=teacher,
        slt_name=names(web).get(row.slt_user_id, ""),
        join_url=teams_join_url(session.join_url) if session is not None else None,
    )


def get_drop_in(web: WebContext, user: User, dropin_id: str) -> DropInView:
    """Raises: HTTPException: 404 no such drop-in, or not one of the user's schools."""
    with web.db() as db:
        row = dropins.get(db, dropin_id)
        if row is None or not access.can_see_drop_in(user, row):
            not_found()
        session = db.get(SessionRow, row.session_id)
        snapshot = dropins.latest_snapshot(db, session) if session is not None else None
        teacher = teacher_name_of(session, snapshot) if session is not None else ""
    return _view(web, row, session, teacher)


def list_drop_ins(web: WebContext, user: User) -> list[DropInView]:
    """The drop-ins of the user's schools from the last 12 weeks and ahead, newest first."""
    since = web.clock() - timedelta(weeks=12)
    views = []
    with web.db() as db:
        for row in dropins.list_dropins(db, since=since):
            if not access.can_see_drop_in(user, row):
                continue
            session = db.get(SessionRow, row.session_id)
            snapshot = dropins.latest_snapshot(db, session) if session is not None else None
            teacher = teacher_name_of(session, snapshot) if session is not None else ""
            views.append(_view(web, row, session, teacher))
    return views


def _managed(web: WebContext, user: User, dropin_id: str) -> DropInRow:
    with web.db() as db:
        row = dropins.get(db, dropin_id)
    if row is None or not access.can_see_drop_in(user, row):
        not_found()
    if not access.can_manage_drop_in(user, row):
        deny()
    return row


def retry_calendar(web: WebContext, user: User, dropin_id: str) -> CalendarResult:
    """Try again to put the drop-in in the calendar (the same transactionId).

    Raises:
        HTTPException: 404 / 403.
        DropInError: the drop-in is no longer scheduled.
    """
    row = _managed(web, user, dropin_id)
    return dropins.put_in_calendar(
        web.db,
        web.graph,
        dropin_id=row.id,
        teacher_name=teacher_name_of,
        timezone=web.settings.school_day.timezone,
        by=actor_for(user),
        now=web.clock(),
    )


def record_outcome(
    web: WebContext, user: User, dropin_id: str, *, outcome: DropInOutcome | str, notes: str | None
) -> DropInRow:
    """Raises: HTTPException: 404 / 403. DropInError: the outcome cannot be recorded."""
    _managed(web, user, dropin_id)
    with transaction(web.db) as db:
        row = dropins.get(db, dropin_id)
        if row is None:
            not_found()
        return dropins.record_outcome(
            db, row, outcome=outcome, notes=notes, by=actor_for(user), now=web.clock()
        )


def cancel_drop_in(web: WebContext, user: User, dropin_id: str) -> DropInRow:
    """Raises: HTTPException: 404 / 403. DropInError: not scheduled."""
    _managed(web, user, dropin_id)
    with transaction(web.db) as db:
        row = dropins.get(db, dropin_id)
        if row is None:
            not_found()
        return dropins.cancel(db, row, by=actor_for(user), now=web.clock())


# --- coverage --------------------------------------------------------------------------------


def drop_in_coverage(web: WebContext, user: User, school: str | None) -> Coverage:
    with web.db() as db:
        return coverage(
            db,
            terms=web.settings.school_day.terms,
            timezone=web.settings.school_day.timezone,
            now=web.clock(),
            visible=lambda key: access.can_see_school(user, key),
            school=school_filter(user, school),
        )


__all__ = [
    "Approvals",
    "DropInError",
    "DropInView",
    "add_activity",
    "board",
    "cancel_drop_in",
    "decide_registration",
    "drop_in_coverage",
    "get_drop_in",
    "list_activities",
    "list_approvals",
    "list_drop_ins",
    "record_outcome",
    "retire_activity",
    "schedule_drop_in",
]
