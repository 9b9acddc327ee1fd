"""One adult alone with one pupil, not covered by an approved registration with consent.

Enforces BSF Appendix A (staff working remotely): SLT approve one-to-one teaching only for
particular activities, and parental permission must be obtained before such sessions take place.
Whingate's profile uses it with no consent requirement: any one-to-one needs SMT approval.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from remote_guard.collect.snapshot import Missing, SessionPhase, SessionSnapshot
from remote_guard.rules._consent import one_to_one_cover
from remote_guard.rules._people import local_clock, local_time, school_zone
from remote_guard.rules._presence import alone_stretches, describe_duration, planned_pair
from remote_guard.rules.base import Outcome, RuleContext, Severity, Verdict


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold_seconds: int = Field(default=120, ge=0, le=3600)
    require_approved_activity: bool = True
    require_consent: bool = True
    consent_scope: str = "one_to_one"


class OneToOneWithoutConsent:
    id: ClassVar[str] = "one_to_one_without_consent"
    title: ClassVar[str] = "One-to-one session without approval and parental consent"
    clauses: ClassVar[tuple[str, ...]] = (
        "BSF-A.staff-remote.3",
        "BSF-A.staff-remote.4",
        "WPS-10.2",
    )
    severity: ClassVar[Severity] = Severity.HIGH
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = Params

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        params = context.params
        if not isinstance(params, Params):
            raise TypeError(f"{self.id} needs its own Params, got {type(params).__name__}")
        phase = snapshot.phase(context.now)
        sessions_start = snapshot.scheduled_start or snapshot.actual_start
        outcomes: list[Outcome] = []
        seen_pupils: set[str] = set()
        # Pupils whose one-to-one is covered: an OK under the pupil's own key, so a finding raised
        # before the registration existed turns to pass rather than being retired.
        covered: dict[str, str] = {}

        if snapshot.presence is not None:
            for stretch in alone_stretches(snapshot):
                if stretch.seconds <= params.threshold_seconds or stretch.pupil_id in seen_pupils:
                    continue
                start = min(sessions_start or stretch.start, stretch.start)
                cover = one_to_one_cover(
                    context.registers,
                    staff_id=stretch.staff_id,
                    pupil_id=stretch.pupil_id,
                    join_url=snapshot.join_url,
                    start=start,
                    require_approved_activity=params.require_approved_activity,
                    require_consent=params.require_consent,
                    consent_scope=params.consent_scope,
                    zone=school_zone(context),
                )
                if cover.covered:
                    covered.setdefault(stretch.pupil_id, cover.reason)
                    continue
                seen_pupils.add(stretch.pupil_id)
                staff = snapshot.person(stretch.staff_id)
                pupil = snapshot.person(stretch.pupil_id)
                outcomes.append(
                    Outcome(
                        verdict=Verdict.BREACH,
                        subject_key=stretch.pupil_id,
                        observed=f"alone together for {describe_duration(stretch.seconds)}",
                        message=(
                            f"{staff.display_name or 'A member of staff'} was alone with pupil "
                            f"{pupil.display_name or stretch.pupil_id} for "
                            f"{describe_duration(stretch.seconds)} "
                            f"({local_time(stretch.start, context)}-"
                            f"{local_clock(stretch.end, context)}): {cover.reason}."
                        ),
                        next_step=(
                            "DSL: review the session. Teacher: register one-to-one sessions with "
                            "the parent's consent before they take place."
                        ),
                        evidence={
                            "staff_id": stretch.staff_id,
                            "pupil_id": stretch.pupil_id,
                            "alone_from": stretch.start.isoformat(),
                            "alone_until": stretch.end.isoformat(),
                            "alone_seconds": round(stretch.seconds),
                            "threshold_seconds": params.threshold_seconds,
                            "cover": cover.reason,
                            "registration_id": cover.registration_id,
                        },
                        sources=tuple(sorted({p.source for p in snapshot.presence})),
                    )
                )

        pair = planned_pair(snapshot)
        if pair is not None and phase is not SessionPhase.ENDED and pair[1] not in seen_pupils:
            staff_id, pupil_id = pair
            start = sessions_start or context.now
            cover = one_to_one_cover(
                context.registers,
                staff_id=staff_id,
                pupil_id=pupil_id,
                join_url=snapshot.join_url,
                start=start,
                require_approved_activity=params.require_approved_activity,
                require_consent=params.require_consent,
                consent_scope=params.consent_scope,
                zone=school_zone(context),
            )
            if cover.covered:
                covered.setdefault(pupil_id, cover.reason)
            else:
                seen_pupils.add(pupil_id)
                staff = snapshot.person(staff_id)
                pupil = snapshot.person(pupil_id)
                outcomes.append(
                    Outcome(
                        verdict=Verdict.BREACH,
                        subject_key=pupil_id,
                        observed="one-to-one planned"
                        if phase is SessionPhase.UPCOMING
                        else "one-to-one planned, now live",
                        message=(
                            f"{staff.display_name or 'A member of staff'} has a one-to-one with "
                            f"pupil {pupil.display_name or pupil_id} planned for "
                            f"{local_time(start, context)}: {cover.reason}."
                        ),
                        next_step=(
                            "Teacher: register this one-to-one with the parent's consent and ask "
                            "SLT to approve it before it starts, or add a second adult."
                        ),
                        evidence={
                            "staff_id": staff_id,
                            "pupil_id": pupil_id,
                            "planned_start": start.isoformat(),
                            "cover": cover.reason,
                            "registration_id": cover.registration_id,
                        },
                        sources=("calendar",),
                    )
                )

        for pupil_id, reason in sorted(covered.items()):
            if pupil_id in seen_pupils:
                continue
            pupil = snapshot.person(pupil_id)
            outcomes.append(
                Outcome(
                    verdict=Verdict.OK,
                    subject_key=pupil_id,
                    observed="one-to-one covered",
                    message=(
                        f"The one-to-one with pupil {pupil.display_name or pupil_id} is covered: "
                        f"{reason}."
                    ),
                    evidence={"pupil_id": pupil_id, "cover": reason},
                    sources=("registers",),
                )
            )
        if outcomes:
            return outcomes
        if snapshot.presence is None and phase is SessionPhase.ENDED:
            if Missing.PRESENCE in snapshot.missing:
                return [
                    Outcome(
                        verdict=Verdict.UNKNOWN,
                        observed="attendance could not be read",
                        message=(
                            "Whether anyone was left alone with a pupil could not be checked: "
                            f"{snapshot.missing[Missing.PRESENCE]}."
                        ),
                        next_step="Check the attendance-report permission and access policy.",
                        evidence={"missing": snapshot.missing[Missing.PRESENCE]},
                        sources=("attendance_report", "call_record"),
                    )
                ]
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed="attendance not yet available",
                    message="Attendance for this session is not available yet; it is re-checked.",
                )
            ]
        return [
            Outcome(
                verdict=Verdict.OK,
                observed="no unapproved one-to-one",
                message="No one was alone with a pupil outside an approved, consented one-to-one.",
            )
        ]


RULE = OneToOneWithoutConsent()
