"""The same pupil or teacher breaching the code again and again, raised to SLT.

Enforces BSF Appendix A (sanctions when working remotely): a breach by a pupil is dealt with by
the teacher with the pupil and parents, and senior leaders step in when problems persist. This is
a second-stage rule: it looks at the breaches already found for the people in this session, over a
window of days, rather than at one snapshot.

A pupil's breaches are the findings *about* them under rules of pupil conduct (chat, recording,
passing on invitations); a teacher's are the breaches in sessions they organised. Exempted
findings do not count. The finding is raised in the session where the count reaches the
threshold (and in each later session with a further breach), so SLT see it when it happens.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from remote_guard.collect.snapshot import Missing, SessionSnapshot
from remote_guard.rules.base import Outcome, PriorBreach, RuleContext, Severity, Verdict

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
        in_window = [b for b in context.history if since <= b.at <= start]
        people: dict[str, list[PriorBreach]] = {}
        for breach in in_window:
            if breach.rule_id in params.pupil_rules and breach.subject_key:
                people.setdefault(breach.subject_key, []).append(breach)
            elif breach.rule_id in params.staff_rules and breach.organizer_id:
                people.setdefault(breach.organizer_id, []).append(breach)
        outcomes: list[Outcome] = []
        for person_id, breaches in sorted(people.items()):
            sessions = {b.session_id for b in breaches}
            # Raised only where this session itself adds a breach for the person.
            if snapshot.session_id not in sessions or len(sessions) < params.threshold:
                continue
            person = snapshot.person(person_id)
            name = person.display_name or person_id
            ordered = sorted(breaches, key=lambda b: (b.at, b.session_id, b.rule_id))
            outcomes.append(
                Outcome(
                    verdict=Verdict.BREACH,
                    subject_key=person_id,
                    observed=(
                        f"breaches in {len(sessions)} sessions within {params.window_days} days"
                    ),
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
                        "breaches": [
                            {
                                "rule": b.rule_id,
                                "session_id": b.session_id,
                                "session_start": _iso(b.at),
                                "status": b.status.value,
                            }
                            for b in ordered
                        ],
                    },
                    sources=("findings",),
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


def _iso(value: datetime) -> str:
    return value.isoformat()


RULE = RepeatedBreaches()
