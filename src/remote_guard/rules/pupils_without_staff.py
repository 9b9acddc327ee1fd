"""Pupils together in a Teams session with no member of staff present.

Enforces the national-guidance expectation (LGfL DigiSafe, safe remote learning) that pupils can
join a lesson but not start one or carry it on without the teacher: pupils left in a meeting after
the teacher has gone, let in before the teacher arrives, or meeting in a session a pupil
organised, are unsupervised online, which is where bullying and unknown joiners go unnoticed.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import ClassVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from remote_guard.collect.snapshot import Missing, PersonKind, SessionPhase, SessionSnapshot
from remote_guard.rules._presence import describe_duration, merged_intervals
from remote_guard.rules.base import Outcome, RuleContext, Severity, Verdict


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold_seconds: int = Field(default=120, ge=0, le=3600)


class PupilsWithoutStaff:
    id: ClassVar[str] = "pupils_without_staff"
    title: ClassVar[str] = "Pupils in a session without a member of staff"
    clauses: ClassVar[tuple[str, ...]] = ("NG-12",)
    severity: ClassVar[Severity] = Severity.MEDIUM
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.PRESENCE, Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = Params

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        params = context.params
        if not isinstance(params, Params):
            raise TypeError(f"{self.id} needs its own Params, got {type(params).__name__}")
        outcomes: list[Outcome] = []
        organizer = snapshot.people.get(snapshot.organizer_id or "")
        if organizer is not None and organizer.kind is PersonKind.PUPIL:
            outcomes.append(
                Outcome(
                    verdict=Verdict.BREACH,
                    subject_key="organizer",
                    observed="organised by a pupil",
                    message=(
                        f"\u201c{snapshot.subject or 'A Teams meeting'}\u201d was organised by "
                        f"pupil {organizer.display_name or organizer.id}."
                    ),
                    next_step=(
                        "IT: check the Teams meeting policy for pupil accounts (pupils should "
                        "not be able to schedule or start meetings); class teacher: talk to the "
                        "pupil."
                    ),
                    evidence={"organizer_id": organizer.id},
                    sources=("calendar",),
                )
            )
        if snapshot.presence is None:
            if snapshot.phase(context.now) is not SessionPhase.ENDED or outcomes:
                return outcomes or [
                    Outcome(
                        verdict=Verdict.NOT_APPLICABLE,
                        observed="attendance not yet available",
                        message="Who was present is checked once the session has ended.",
                    )
                ]
            return [
                Outcome(
                    verdict=Verdict.UNKNOWN,
                    observed="attendance not read",
                    message="Who was present could not be read, so unsupervised time is unknown.",
                    sources=("attendance",),
                )
            ]
        stretches = _unsupervised(snapshot)
        long = [
            (a, b, who)
            for a, b, who in stretches
            if (b - a).total_seconds() > params.threshold_seconds
        ]
        if long:
            zone = ZoneInfo(context.school_day.timezone if context.school_day else "Europe/London")
            longest = max((b - a).total_seconds() for a, b, _ in long)
            pupils = sorted({pid for _, _, who in long for pid in who})
            names = ", ".join(snapshot.person(pid).display_name or pid for pid in pupils)
            first = long[0][0].astimezone(zone)
            outcomes.append(
                Outcome(
                    verdict=Verdict.BREACH,
                    subject_key="",
                    observed=f"pupils without staff for {describe_duration(longest)}",
                    message=(
                        f"In \u201c{snapshot.subject or 'a Teams session'}\u201d {names} "
                        f"{'was' if len(pupils) == 1 else 'were'} in the session with no member "
                        f"of staff for up to {describe_duration(longest)} (from "
                        f"{first:%a %d %b %H:%M})."
                    ),
                    next_step=(
                        "Teacher: end the meeting for everyone when you leave and keep the lobby "
                        "on so pupils wait until you admit them."
                    ),
                    evidence={
                        "stretches": [
                            {"start": a.isoformat(), "end": b.isoformat(), "pupils": sorted(who)}
                            for a, b, who in long
                        ],
                        "threshold_seconds": params.threshold_seconds,
                    },
                    sources=("attendance",),
                )
            )
        return outcomes or [
            Outcome(
                verdict=Verdict.OK,
                observed="staff present whenever pupils were",
                message="A member of staff was present whenever pupils were in the session.",
                sources=("attendance",),
            )
        ]


def _unsupervised(snapshot: SessionSnapshot) -> list[tuple[datetime, datetime, frozenset[str]]]:
    """Stretches with at least one pupil present and no member of staff, merged end to end."""
    intervals = merged_intervals(snapshot)
    boundaries = sorted({t for spans in intervals.values() for span in spans for t in span})
    found: list[tuple[datetime, datetime, frozenset[str]]] = []
    for left, right in itertools.pairwise(boundaries):
        present = [
            pid
            for pid, spans in intervals.items()
            if any(start <= left and right <= end for start, end in spans)
        ]
        kinds = {snapshot.person(pid).kind for pid in present}
        if PersonKind.PUPIL not in kinds or PersonKind.STAFF in kinds:
            continue
        pupils = frozenset(p for p in present if snapshot.person(p).kind is PersonKind.PUPIL)
        if found and found[-1][1] == left:
            start, _, who = found[-1]
            found[-1] = (start, right, who | pupils)
        else:
            found.append((left, right, pupils))
    return found


RULE = PupilsWithoutStaff()
