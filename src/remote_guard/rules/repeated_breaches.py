"""The same pupil or teacher breaching the code again and again, raised to SLT.

Enforces BSF Appendix A (sanctions when working remotely): a breach by a pupil is dealt with by
the teacher with the pupil and parents, and senior leaders step in when problems persist. This is
a second-stage rule: it looks at the breaches already found for the people in this session, over a
window of days, rather than at one snapshot.

A pupil's breaches are the findings *about* them under rules of pupil conduct (chat, recording,
passing on invitations); a teacher's are the breaches in sessions they organised. Exempted
findings do not count. The finding is raised in the session where the count reaches the
threshold (and in each later session with a further breach), so SLT see it when it happens.

A check of a counted rule that could not be made (an ``error`` finding: a chat or recordings that
could not be read) may hide a breach, in this session or an earlier one. Where the breaches found
plus the sessions left unchecked could reach the threshold with a breach in this session, whether
the problem persists is unknown: ``error`` for that person, never a pass. Unchecked sessions of
someone far from the threshold change nothing, so they leave the answer as it is.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from remote_guard.collect.snapshot import Missing, PersonKind, SessionSnapshot
from remote_guard.rules.base import (
    HistoryItem,
    Outcome,
    PriorBreach,
    PriorUnknown,
    RuleContext,
    Severity,
    Verdict,
)

DEFAULT_PUPIL_RULES = ("pupil_meeting_chat", "pupil_started_recording", "uninvited_attendee")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: int = Field(default=3, ge=2, le=50)  # sessions with a breach, this one included
    window_days: int = Field(default=28, ge=1, le=120)
    pupil_rules: tuple[str, ...] = DEFAULT_PUPIL_RULES
    # Which rules count against the organiser; empty: none (the rule watches pupils only).
    staff_rules: tuple[str, ...] = ()


class RepeatedBreaches:
    id: ClassVar[str] = "repeated_breaches"
    title: ClassVar[str] = "Repeated breaches by the same person"
    clauses: ClassVar[tuple[str, ...]] = ("BSF-A.sanction-remote.3",)
    severity: ClassVar[Severity] = Severity.HIGH
    requires: ClassVar[frozenset[Missing]] = frozenset()
    stage: ClassVar[int] = 2
    Params: ClassVar[type[BaseModel]] = Params

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        params = context.params
        if not isinstance(params, Params):
            raise TypeError(f"{self.id} needs its own Params, got {type(params).__name__}")
        start = snapshot.scheduled_start or snapshot.actual_start or snapshot.collected_at
        since = start - timedelta(days=params.window_days)
        people: dict[str, list[PriorBreach]] = {}
        unchecked: dict[str, list[PriorUnknown]] = {}
        for item in context.history:
            if not since <= item.at <= start:
                continue
            for person_id in _counted_against(item, params, snapshot):
                if isinstance(item, PriorBreach):
                    people.setdefault(person_id, []).append(item)
                else:
                    unchecked.setdefault(person_id, []).append(item)
        outcomes: list[Outcome] = []
        for person_id in sorted(people.keys() | unchecked.keys()):
            breaches = people.get(person_id, [])
            sessions = {b.session_id for b in breaches}
            unknown = {u.session_id for u in unchecked.get(person_id, [])} - sessions
            here = snapshot.session_id
            # Raised only where this session itself adds a breach for the person.
            if here in sessions and len(sessions) >= params.threshold:
                outcomes.append(_breach(snapshot, person_id, breaches, params))
            elif here in sessions | unknown and len(sessions | unknown) >= params.threshold:
                # What could not be read may be the breach that completes the pattern here.
                outcomes.append(
                    _unknown(
                        snapshot,
                        person_id,
                        breaches,
                        [u for u in unchecked[person_id] if u.session_id in unknown],
                        params,
                    )
                )
        if outcomes:
            return outcomes
        return [
            Outcome(
                verdict=Verdict.OK,
                observed="no repeated breaches",
                message="No one in this session has breached the code repeatedly.",
                sources=("findings",),
            )
        ]


def _breach(
    snapshot: SessionSnapshot,
    person_id: str,
    breaches: list[PriorBreach],
    params: Params,
) -> Outcome:
    sessions = {b.session_id for b in breaches}
    person = snapshot.person(person_id)
    name = person.display_name or person_id
    return Outcome(
        verdict=Verdict.BREACH,
        subject_key=person_id,
        observed=f"breaches in {len(sessions)} sessions within {params.window_days} days",
        message=(
            f"{name} has breached the code of practice in {len(sessions)} remote "
            f"sessions in the last {params.window_days} days "
            f"({', '.join(sorted({b.rule_id for b in breaches}))}); the problem "
            "persists, so it is raised to senior leaders."
        ),
        next_step=(
            "SLT: review the earlier findings with the class teacher, contact the "
            "parents if that has not worked, and record what was agreed."
        ),
        evidence={
            "person_kind": person.kind.value,
            "window_days": params.window_days,
            "breaches": _breach_evidence(breaches),
        },
        sources=("findings",),
    )


def _unknown(
    snapshot: SessionSnapshot,
    person_id: str,
    breaches: list[PriorBreach],
    unknowns: list[PriorUnknown],
    params: Params,
) -> Outcome:
    found = len({b.session_id for b in breaches})
    unchecked = len({u.session_id for u in unknowns})
    person = snapshot.person(person_id)
    name = person.display_name or person_id
    ordered = sorted(unknowns, key=lambda u: (u.at, u.session_id, u.rule_id))
    return Outcome(
        verdict=Verdict.UNKNOWN,
        subject_key=person_id,
        observed=(
            f"breaches in {found} sessions within {params.window_days} days; "
            f"{unchecked} more could not be checked"
        ),
        message=(
            f"{name} has breached the code of practice in {found} remote sessions in the "
            f"last {params.window_days} days, and in {unchecked} more it could not be checked "
            f"whether they did ({', '.join(sorted({u.rule_id for u in unknowns}))}); senior "
            f"leaders step in at {params.threshold} sessions, so whether the problem persists "
            "is unknown."
        ),
        next_step=(
            "Check remote_guard's Graph permissions and the Teams application access policy "
            "(remote-guard doctor); the count is made again once those sessions are read."
        ),
        evidence={
            "person_kind": person.kind.value,
            "window_days": params.window_days,
            "threshold": params.threshold,
            "breaches": _breach_evidence(breaches),
            "unchecked": [
                {
                    "rule": u.rule_id,
                    "session_id": u.session_id,
                    "session_start": _iso(u.at),
                }
                for u in ordered
            ],
        },
        sources=("findings",),
    )


def _counted_against(item: HistoryItem, params: Params, snapshot: SessionSnapshot) -> list[str]:
    """Whom a breach (or a check that could not be made) counts against: the pupil it is
    about under the pupil rules, the organiser under the staff rules. A check of a pupil rule
    that could not be made for the whole session may hide a breach by any pupil in it."""
    if item.rule_id in params.pupil_rules:
        if item.subject_key:
            return [item.subject_key]
        if isinstance(item, PriorUnknown):
            return sorted(
                pid for pid in item.people if snapshot.person(pid).kind is PersonKind.PUPIL
            )
        return []
    if item.rule_id in params.staff_rules and item.organizer_id:
        return [item.organizer_id]
    return []


def _breach_evidence(breaches: list[PriorBreach]) -> list[dict[str, str]]:
    ordered = sorted(breaches, key=lambda b: (b.at, b.session_id, b.rule_id))
    return [
        {
            "rule": b.rule_id,
            "session_id": b.session_id,
            "session_start": _iso(b.at),
            "status": b.status.value,
        }
        for b in ordered
    ]


def _iso(value: datetime) -> str:
    return value.isoformat()


RULE = RepeatedBreaches()
