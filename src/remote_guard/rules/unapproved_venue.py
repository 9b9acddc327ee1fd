"""A Teams meeting with pupils held somewhere the school has not approved.

Enforces WPS-10.2 (staff contact pupils only through the channels the School Management Team
approved) with the national guidance behind it: NG-2 (communicate only through channels senior
leaders approved) and NG-8 (a senior member of staff should know that an online lesson is
taking place). A school approves venues in its profile: the class teams whose channel meetings
are approved, whether private (non-channel) meetings with pupils are allowed, and whether an
unscheduled "Meet now" meeting is. A private meeting that is an SLT-approved, registered
one-to-one is an approved arrangement: senior leaders know about it. Checked from the moment the
meeting is on a calendar, so the teacher can move it before it starts.

Peer-to-peer calls, direct chats and other providers' meetings are left to the rules written for
them (``one_to_one_without_consent``, ``direct_chat_with_pupil``, ``non_teams_meeting``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict

from remote_guard.collect.snapshot import (
    Missing,
    SessionSnapshot,
)
from remote_guard.consent.registers import ApprovalStatus, Registration
from remote_guard.rules._people import (
    TEAMS_MEETINGS,
    cancelled_or_without_pupils,
    expected_pupils,
    pupil_sources,
    session_label,
    staff_involved,
)
from remote_guard.rules.base import Outcome, RuleContext, Severity, Verdict

# A channel meeting's join URL names the channel's thread; a private meeting's names a
# 19:meeting_... thread. A "Meet now" in a channel is found only from its call record, where the
# collector does not resolve the channel, so the URL is the only sign of it.
_CHANNEL_THREAD = re.compile(r"/l/meetup-join/(19:[^/]+@thread\.(?:tacv2|skype))/", re.IGNORECASE)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Team display names or ids whose channel meetings the school approved. None: every team
    # of the school is approved; []: none is approved yet.
    approved_teams: list[str] | None = None
    # False: sessions with pupils must be channel meetings in an approved team.
    allow_private_meetings: bool = True
    # A private meeting covered by an approved one-to-one registration for its organiser and
    # pupil is an approved arrangement even when private meetings are not allowed.
    allow_registered_one_to_ones: bool = True
    # False: an ad-hoc "Meet now" meeting with pupils (no calendar entry) is a breach.
    allow_unscheduled: bool = True


class UnapprovedVenue:
    id: ClassVar[str] = "unapproved_venue"
    title: ClassVar[str] = "Teams meeting with pupils outside the approved channels"
    clauses: ClassVar[tuple[str, ...]] = ("WPS-10.2", "NG-2", "NG-8")
    severity: ClassVar[Severity] = Severity.MEDIUM
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = Params

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        params = context.params
        if not isinstance(params, Params):
            raise TypeError(f"{self.id} needs its own Params, got {type(params).__name__}")
        if snapshot.kind not in TEAMS_MEETINGS:
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed=f"not a Teams meeting ({snapshot.kind.value})",
                    message="Only Teams meetings are checked for an approved venue by this rule.",
                )
            ]
        skip = cancelled_or_without_pupils(snapshot, what="where it was held")
        if skip is not None:
            return [skip]
        pupils = sorted(expected_pupils(snapshot))
        if not staff_involved(snapshot):
            # Pupils meeting among themselves are not a staff session in the wrong place;
            # pupils_without_staff is the check for that.
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed="no member of staff involved",
                    message="No member of staff organised, was invited to or attended it.",
                )
            ]
        label = session_label(snapshot, context)
        found_in = "calendar" if snapshot.scheduled_start is not None else "call_record"
        sources = tuple(dict.fromkeys((found_in, *pupil_sources(snapshot))))
        evidence: dict[str, Any] = {
            "kind": snapshot.kind.value,
            "expected_pupil_ids": pupils,
            "organizer_id": snapshot.organizer_id,
            "scheduled_start": _iso(snapshot.scheduled_start),
            "actual_start": _iso(snapshot.actual_start),
        }

        thread = _channel_thread(snapshot)
        unscheduled = snapshot.scheduled_start is None
        evidence["unscheduled"] = unscheduled
        problems: list[str] = []
        team_unknown = False
        if thread is not None:
            verdict, team_evidence = _team_check(snapshot, params, thread)
            evidence.update(team_evidence)
            if verdict is Verdict.BREACH:
                problems.append(
                    "the school has approved no team for sessions with pupils yet"
                    if not params.approved_teams
                    else "its team is not on the school's list of approved teams"
                )
            team_unknown = verdict is Verdict.UNKNOWN
        elif not params.allow_private_meetings:
            problems.append("the school allows sessions with pupils only in approved teams")
        if unscheduled and not params.allow_unscheduled:
            problems.append("it was started ad hoc (Meet now), without a calendar entry")
        where = _venue(snapshot, thread, unscheduled)

        if problems and thread is None and params.allow_registered_one_to_ones:
            registration = _registered_one_to_one(snapshot, context, pupils)
            if registration is not None:
                # SLT approved this one-to-one, so a senior leader knows it takes place (NG-8):
                # an approved arrangement even though it is private or unscheduled.
                return [
                    Outcome(
                        verdict=Verdict.OK,
                        observed="registered one-to-one",
                        message=f"{label} is a registered one-to-one that senior leaders approved.",
                        evidence={**evidence, "registration_id": registration.id},
                        sources=(*sources, "registers"),
                    )
                ]
        if problems:
            return [
                Outcome(
                    verdict=Verdict.BREACH,
                    observed=f"{where} with pupils, not approved",
                    message=(
                        f"{label} with {_pupil_names(snapshot, pupils)} is {where}, not an "
                        f"approved venue: {'; '.join(problems)}."
                    ),
                    next_step=(
                        "Teacher: hold sessions with pupils as scheduled meetings in an approved "
                        "class team's channel, or register a one-to-one for SLT approval. SLT: "
                        "review the session, and approve the team in remote_guard's profile if "
                        "it should be."
                    ),
                    evidence={**evidence, "problems": problems},
                    sources=sources,
                )
            ]
        if team_unknown:
            return [
                Outcome(
                    verdict=Verdict.UNKNOWN,
                    observed="team not known",
                    message=(
                        f"{label} is a channel meeting whose team could not be identified, so "
                        "whether the team is approved could not be checked."
                    ),
                    next_step="Check remote_guard's Team.ReadBasic.All and Channel.ReadBasic.All "
                    "permissions; the check repeats on the next poll.",
                    evidence=evidence,
                    sources=sources,
                )
            ]
        return [
            Outcome(
                verdict=Verdict.OK,
                observed=where,
                message=f"{label} is {where}, which the school allows for sessions with pupils.",
                evidence=evidence,
                sources=sources,
            )
        ]


def _team_check(
    snapshot: SessionSnapshot, params: Params, thread: str
) -> tuple[Verdict, dict[str, Any]]:
    """Whether a channel meeting's team is approved: OK, BREACH, or UNKNOWN when a list of
    teams is set but the channel could not be matched to a team."""
    channel = snapshot.channel
    team_id = channel.team_id if channel else None
    team_name = channel.team_name if channel else None
    evidence: dict[str, Any] = {
        "channel_thread_id": thread,
        "team_id": team_id,
        "team_name": team_name,
        "channel_name": channel.channel_name if channel else None,
        "approved_teams": params.approved_teams,
    }
    if params.approved_teams is None:
        return Verdict.OK, evidence
    approved = {entry.strip().casefold() for entry in params.approved_teams}
    if not approved:
        return Verdict.BREACH, evidence
    names = {value.casefold() for value in (team_id, team_name) if value}
    if not names:
        return Verdict.UNKNOWN, evidence
    return (Verdict.OK if names & approved else Verdict.BREACH), evidence


def _venue(snapshot: SessionSnapshot, thread: str | None, unscheduled: bool) -> str:
    """How a message names where the meeting is held."""
    if thread is None:
        return "an unscheduled private meeting" if unscheduled else "a private meeting"
    team = snapshot.channel.team_name if snapshot.channel else None
    where = f"the team \u201c{team}\u201d" if team else "a team channel"
    return f"an unscheduled meeting in {where}" if unscheduled else f"a meeting in {where}"


def _channel_thread(snapshot: SessionSnapshot) -> str | None:
    if snapshot.channel is not None:
        return snapshot.channel.thread_id
    if snapshot.join_url:
        match = _CHANNEL_THREAD.search(unquote(urlsplit(snapshot.join_url or "").path))
        if match:
            return match.group(1)
    return None


def _registered_one_to_one(
    snapshot: SessionSnapshot, context: RuleContext, pupils: list[str]
) -> Registration | None:
    """The approved registration covering this meeting as a one-to-one of its organiser with
    its one pupil, if there is one."""
    if len(pupils) != 1 or snapshot.organizer_id is None:
        return None
    start = snapshot.scheduled_start or snapshot.actual_start
    for registration in context.registers.registrations:
        if registration.status is not ApprovalStatus.APPROVED:
            continue
        if registration.covers(
            staff_id=snapshot.organizer_id,
            pupil_id=pupils[0],
            join_url=snapshot.join_url,
            start=start,
        ):
            return registration
    return None


def _pupil_names(snapshot: SessionSnapshot, pupils: list[str]) -> str:
    names = sorted(snapshot.person(pid).display_name or pid for pid in pupils)
    if len(names) == 1:
        return f"pupil {names[0]}"
    if len(names) <= 3:
        return "pupils " + ", ".join(names[:-1]) + " and " + names[-1]
    return f"{len(names)} pupils"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


RULE = UnapprovedVenue()
