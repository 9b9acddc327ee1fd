"""Contact with pupils outside the school day, at the weekend or outside term.

Enforces WPS-10.1 (staff working from home may talk with children within the school day) and
national guidance NG-1 (contact pupils within school hours) and NG-16 (remote work with pupils
only in normal contact hours). The school day, school weekdays and term dates come from the
school's settings; times are compared on the school's clock, so the clock changes are right.

Which times count: for a session that has ended, the time pupils were actually in it (from
attendance), else the call's actual start and end, else the calendar; for an upcoming or live
session, the calendar, so the warning comes before it happens. For a chat outside any meeting,
each message's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from remote_guard.collect.snapshot import (
    Missing,
    PersonKind,
    SessionKind,
    SessionPhase,
    SessionSnapshot,
)
from remote_guard.rules._people import expected_pupils, staff_involved
from remote_guard.rules._presence import merged_intervals
from remote_guard.rules.base import Outcome, RuleContext, SchoolDay, Severity, Verdict

_VERBS = {
    SessionPhase.UPCOMING: "is planned for",
    SessionPhase.LIVE: "is taking place",
    SessionPhase.ENDED: "took place",
}
_DAY_NAMES = {1: "Mon", 2: "Tue", 3: "Wed", 4: "Thu", 5: "Fri", 6: "Sat", 7: "Sun"}

# How many message times a chat finding's sentence lists; the evidence keeps them all.
_TIMES_IN_MESSAGE = 5


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Minutes either side of the school day that still count as inside it (a lesson set up a
    # little early, a register finished a little late).
    grace_minutes: int = Field(default=0, ge=0, le=120)


@dataclass(frozen=True)
class _Window:
    start: datetime
    end: datetime
    basis: str  # which times were used, as an outcome's source: attendance, call_record, calendar


class OutsideSchoolHours:
    id: ClassVar[str] = "outside_school_hours"
    title: ClassVar[str] = "Contact with pupils outside the school day"
    clauses: ClassVar[tuple[str, ...]] = ("WPS-10.1", "NG-1", "NG-16")
    severity: ClassVar[Severity] = Severity.MEDIUM
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = Params

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        params = context.params
        if not isinstance(params, Params):
            raise TypeError(f"{self.id} needs its own Params, got {type(params).__name__}")
        if snapshot.is_cancelled:
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed="cancelled",
                    message="The session was cancelled, so it brings no contact with pupils.",
                )
            ]
        pupils = _pupils_involved(snapshot)
        if not pupils:
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed="no pupils",
                    message="No pupil was invited to or took part in this session.",
                )
            ]
        day = context.school_day
        if day is None:
            return [
                Outcome(
                    verdict=Verdict.UNKNOWN,
                    observed="school day not configured",
                    message=(
                        "The school day is not configured, so whether this session with pupils "
                        "was within it could not be checked."
                    ),
                    next_step="Set [school_day] (hours, weekdays, terms) in the settings.",
                )
            ]
        checker = _Checker(day, timedelta(minutes=params.grace_minutes))
        if snapshot.kind is SessionKind.DIRECT_CHAT:
            return [_check_chat(snapshot, checker, pupils)]
        window = _window(snapshot, context.now)
        if window is None:
            return [
                Outcome(
                    verdict=Verdict.UNKNOWN,
                    observed="session times not known",
                    message="When this session with pupils took place is not known.",
                    next_step="Check the session in Teams; its times could not be read.",
                )
            ]
        reasons = checker.reasons(window.start, window.end)
        evidence = {
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "local_start": checker.local(window.start).isoformat(),
            "local_end": checker.local(window.end).isoformat(),
            "times_from": window.basis,
            "pupil_ids": sorted(pupils),
            **checker.describe(params.grace_minutes),
        }
        span = checker.span(window.start, window.end)
        if not reasons:
            return [
                Outcome(
                    verdict=Verdict.OK,
                    observed="within the school day",
                    message=f"{_session_name(snapshot)} ({span}) was within the school day.",
                    evidence=evidence,
                    sources=(window.basis,),
                )
            ]
        observed = _join(reasons)
        phase = snapshot.phase(context.now)
        upcoming = phase is SessionPhase.UPCOMING
        verb = _VERBS[phase]
        return [
            Outcome(
                verdict=Verdict.BREACH,
                observed=observed,
                message=(
                    f"{_session_name(snapshot)} with {_pupil_count(pupils)} {verb} {span}, "
                    f"{observed} ({checker.hours()})."
                ),
                next_step=(
                    "Organiser: move the session into the school day or cancel it."
                    if upcoming
                    else "SLT: ask the member of staff why pupils were contacted outside the "
                    "school day, and agree hours with them if there is a reason."
                ),
                evidence={**evidence, "reasons": reasons},
                sources=(window.basis,),
            )
        ]


class _Checker:
    """The school day on the school's clock."""

    def __init__(self, day: SchoolDay, grace: timedelta) -> None:
        self.day = day
        self.zone = ZoneInfo(day.timezone)
        self.grace = grace

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    def day_reason(self, on: date) -> str | None:
        """Why ``on`` is not a school day, or None if it is one."""
        if on.isoweekday() not in self.day.weekdays:
            return "at the weekend" if on.isoweekday() >= 6 else "on a day the school is closed"
        if self.day.terms and not any(first <= on <= last for first, last in self.day.terms):
            return "outside term"
        return None

    def reasons(self, start: datetime, end: datetime) -> list[str]:
        """Every way ``start``-``end`` falls outside the school day; empty if it does not.

        Wall-clock times are compared after conversion to the school's zone, so a meeting at
        08:59 BST is before a 09:00 start even though it is 07:59 UTC.
        """
        local_start = self.local(start).replace(tzinfo=None)
        local_end = self.local(end).replace(tzinfo=None)
        reasons: list[str] = []
        for on in sorted({local_start.date(), local_end.date()}):
            reason = self.day_reason(on)
            if reason is not None and reason not in reasons:
                reasons.append(reason)
        if reasons:
            # On a day the school is closed the time of day does not matter.
            return reasons
        opens = datetime.combine(local_start.date(), self.day.start) - self.grace
        closes = datetime.combine(local_start.date(), self.day.end) + self.grace
        if local_start < opens:
            reasons.append("before the school day")
        if local_end > closes:
            reasons.append("after the school day")
        return reasons

    def moment(self, when: datetime) -> str:
        """``Sun 29 Mar 08:59`` on the school's clock."""
        local = self.local(when)
        return f"{local:%a} {local.day} {local:%b %H:%M}"

    def span(self, start: datetime, end: datetime) -> str:
        """``Sun 29 Mar 08:59-09:30`` on the school's clock."""
        if self.local(end).date() == self.local(start).date():
            return f"{self.moment(start)}-{self.local(end):%H:%M}"
        return f"{self.moment(start)} to {self.moment(end)}"

    def hours(self) -> str:
        """How the finding names the school day, e.g. ``school day 09:00-15:30``."""
        text = f"school day {self.day.start:%H:%M}-{self.day.end:%H:%M}, {self.weekdays()}"
        if self.grace:
            text += f", {int(self.grace.total_seconds() // 60)} min grace"
        if self.day.terms:
            text += ", in term"
        return text

    def weekdays(self) -> str:
        """``Mon-Fri``, ``every day``, or a list such as ``Mon, Tue, Thu``."""
        days = sorted(self.day.weekdays)
        if len(days) == 7:
            return "every day"
        if len(days) > 2 and days == list(range(days[0], days[-1] + 1)):
            return f"{_DAY_NAMES[days[0]]}-{_DAY_NAMES[days[-1]]}"
        return ", ".join(_DAY_NAMES[d] for d in days)

    def describe(self, grace_minutes: int) -> dict[str, object]:
        return {
            "school_day": {
                "timezone": self.day.timezone,
                "start": self.day.start.isoformat(),
                "end": self.day.end.isoformat(),
                "weekdays": sorted(self.day.weekdays),
                "terms": [[first.isoformat(), last.isoformat()] for first, last in self.day.terms],
            },
            "grace_minutes": grace_minutes,
        }


def _pupils_involved(snapshot: SessionSnapshot) -> set[str]:
    """The pupils a session brings staff into contact with.

    Meetings: the pupils expected in it (invited, present, or in the channel's team), provided
    a member of staff organised, was invited to or attended it. Direct calls and chats: the
    pupils among the people and members, provided someone who is not a pupil is there too
    (pupils talking among themselves are not staff contact).
    """
    if snapshot.kind not in (SessionKind.PEER_TO_PEER, SessionKind.DIRECT_CHAT):
        return expected_pupils(snapshot) if staff_involved(snapshot) else set()
    ids = set(snapshot.people) | set(snapshot.member_ids)
    ids |= {presence.person_id for presence in snapshot.presence or []}
    pupils = {pid for pid in ids if snapshot.person(pid).kind is PersonKind.PUPIL}
    others = {
        pid
        for pid in ids - pupils
        if snapshot.person(pid).is_human and snapshot.person(pid).kind is not PersonKind.UNKNOWN
    }
    return pupils if others else set()


def _window(snapshot: SessionSnapshot, now: datetime) -> _Window | None:
    """The times to judge: see the module docstring."""
    if snapshot.phase(now) is SessionPhase.ENDED:
        spans = [
            span
            for person_id, person_spans in merged_intervals(snapshot).items()
            if snapshot.person(person_id).kind is PersonKind.PUPIL
            for span in person_spans
        ]
        if spans:
            basis = "call_record" if snapshot.kind is SessionKind.PEER_TO_PEER else "attendance"
            return _Window(min(s for s, _ in spans), max(e for _, e in spans), basis)
        if snapshot.actual_start is not None and snapshot.actual_end is not None:
            return _Window(snapshot.actual_start, snapshot.actual_end, "call_record")
    start = snapshot.scheduled_start or snapshot.actual_start
    end = snapshot.scheduled_end or snapshot.actual_end or start
    if start is None or end is None:
        return None
    basis = "calendar" if snapshot.scheduled_start is not None else "call_record"
    return _Window(start, end, basis)


def _check_chat(snapshot: SessionSnapshot, checker: _Checker, pupils: set[str]) -> Outcome:
    if snapshot.chat is None:
        return Outcome(
            verdict=Verdict.UNKNOWN,
            observed="chat not read",
            message="The chat's messages were not read, so their times could not be checked.",
            next_step="Check Chat.Read.All access; the chat is re-read on the next poll.",
            sources=("chat",),
        )
    late = [
        (message, checker.reasons(message.created, message.created))
        for message in snapshot.chat
        if message.sender_kind == "person"
    ]
    late = [(message, reasons) for message, reasons in late if reasons]
    members = _chat_members(snapshot)
    if not late:
        return Outcome(
            verdict=Verdict.OK,
            observed="messages within the school day",
            message=f"Every message in {members} was sent within the school day.",
            evidence=checker.describe(int(checker.grace.total_seconds() // 60)),
            sources=("chat",),
        )
    labels = [checker.moment(m.created) for m, _ in late]
    shown = ", ".join(labels[:_TIMES_IN_MESSAGE])
    if len(labels) > _TIMES_IN_MESSAGE:
        shown += f" and {len(labels) - _TIMES_IN_MESSAGE} more"
    reasons = list(dict.fromkeys(reason for _, rs in late for reason in rs))
    count = len(late)
    observed = f"{count} message{'s' if count != 1 else ''} {_join(reasons)}"
    return Outcome(
        verdict=Verdict.BREACH,
        observed=observed,
        message=(
            f"In {members}, {count} message{'s were' if count != 1 else ' was'} sent "
            f"{_join(reasons)} ({checker.hours()}): {shown}."
        ),
        next_step=(
            "SLT: ask the member of staff why pupils were messaged outside the school day; "
            "staff should reply only within it."
        ),
        evidence={
            "message_ids": [m.message_id for m, _ in late],
            "sent_at": [m.created.isoformat() for m, _ in late],
            "senders": [m.sender_id for m, _ in late],
            "reasons": [rs for _, rs in late],
            "pupil_ids": sorted(pupils),
            **checker.describe(int(checker.grace.total_seconds() // 60)),
        },
        sources=("chat",),
    )


def _chat_members(snapshot: SessionSnapshot) -> str:
    ids = snapshot.member_ids or sorted(snapshot.people)
    names = [snapshot.person(pid).display_name or pid for pid in ids]
    if len(names) < 2:
        return "the chat"
    return "the chat between " + ", ".join(names[:-1]) + f" and {names[-1]}"


def _session_name(snapshot: SessionSnapshot) -> str:
    subject = f"\u201c{snapshot.subject}\u201d" if snapshot.subject else "A session"
    if snapshot.kind is SessionKind.PEER_TO_PEER:
        subject = "A direct Teams call"
    organiser = snapshot.person(snapshot.organizer_id) if snapshot.organizer_id else None
    if organiser is not None and organiser.display_name and organiser.kind is PersonKind.STAFF:
        return f"{organiser.display_name}'s {subject[0].lower() + subject[1:]}"
    return subject


def _pupil_count(pupils: set[str]) -> str:
    return "1 pupil" if len(pupils) == 1 else f"{len(pupils)} pupils"


def _join(reasons: list[str]) -> str:
    if reasons == ["before the school day", "after the school day"]:
        return "before and after the school day"
    return " and ".join(reasons)


RULE = OutsideSchoolHours()
