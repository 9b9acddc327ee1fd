"""Meeting options of a lesson that let people in, or give them control, without the teacher.

Enforces BSF-A.pupil-remote.8 (BSF Appendix A, pupils working remotely: invitations to live
sessions are not to be passed on), before the lesson: a passed-on link only matters if whoever
holds it can get in. National guidance NG-14 (teachers control who records and who manages the
meeting) and the lobby advice in national-guidance.md point at the same options. Each risky option
is its own finding, so the teacher sees exactly which one to change:

- ``lobbyBypassSettings.scope`` wider than the school (``everyone``: anyone with the link;
  ``organizationAndFederated``: anyone from any other Microsoft 365 organisation);
- ``isDialInBypassEnabled``: phone callers skip the lobby, and nobody can see who they are;
- ``allowedPresenters`` ``everyone`` or ``organization``: pupils (and guests) can present,
  record, and remove or mute other people.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from remote_guard.collect.snapshot import Missing, SessionSnapshot
from remote_guard.rules._people import (
    channel_members_unknown,
    expected_pupils,
    options_not_applicable,
    pupil_sources,
    session_label,
)
from remote_guard.rules.base import Outcome, RuleContext, Severity, Verdict

_OPTIONS = "Teacher: in Teams, open the meeting in your calendar, choose Meeting options, "
_LOBBY_FIX = (
    "set Who can bypass the lobby to People who were invited (or Only organizers and "
    "co-organizers) and Save."
)
_PRESENTERS_FIX = (
    "set Who can present to Only organizers and co-organizers (or Specific people) and Save."
)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Lobby scopes that keep strangers in the lobby. "organization" lets the school's own guest
    # accounts in too; a school that wants them held should drop it from the list.
    allowed_lobby_scopes: tuple[str, ...] = (
        "organizer",
        "invited",
        "organization",
        "organizationExcludingGuests",
    )
    allowed_presenters: tuple[str, ...] = ("organizer", "roleIsPresenter")


class LobbyAdmitsOutsiders:
    id: ClassVar[str] = "lobby_admits_outsiders"
    title: ClassVar[str] = "Meeting options let outsiders in or give pupils control"
    clauses: ClassVar[tuple[str, ...]] = ("BSF-A.pupil-remote.8",)
    severity: ClassVar[Severity] = Severity.MEDIUM
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.SETTINGS, Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = Params

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        params = context.params
        if not isinstance(params, Params):
            raise TypeError(f"{self.id} needs its own Params, got {type(params).__name__}")
        skip = options_not_applicable(snapshot, what="how its lobby is set")
        if skip is not None:
            return [skip]
        pupils = expected_pupils(snapshot)
        # A channel meeting whose team could not be read may be a class's: decided below.
        pupils_unknown = not pupils and channel_members_unknown(snapshot)
        settings = snapshot.settings
        lobby_scope = settings.lobby_scope if settings else None
        dial_in_bypass = settings.dial_in_bypass if settings else None
        presenters = settings.allowed_presenters if settings else None
        label = session_label(snapshot, context)
        sources = ("settings", *pupil_sources(snapshot))
        evidence: dict[str, Any] = {
            "lobby_scope": lobby_scope,
            "dial_in_bypass": dial_in_bypass,
            "allowed_presenters": presenters,
            "expected_pupil_ids": sorted(pupils),
        }
        if lobby_scope is None and dial_in_bypass is None and presenters is None:
            # Nothing to judge by: an option Graph did not report is not a safe option.
            return [
                Outcome(
                    verdict=Verdict.UNKNOWN,
                    observed="meeting options not reported",
                    message=f"The lobby and presenter options of {label} could not be read.",
                    next_step=_OPTIONS + "and check who can bypass the lobby and who can present.",
                    evidence=evidence,
                    sources=("settings",),
                )
            ]
        outcomes: list[Outcome] = []
        if lobby_scope is not None and lobby_scope not in params.allowed_lobby_scopes:
            who = {
                "everyone": "anyone who has the link",
                "organizationAndFederated": "people from other Microsoft 365 organisations",
            }.get(lobby_scope, f"people the lobby setting {lobby_scope!r} lets in")
            outcomes.append(
                Outcome(
                    verdict=Verdict.BREACH,
                    subject_key="lobby_scope",
                    observed=f"lobby bypass: {lobby_scope}",
                    message=(
                        f"In {label}, {who} can join without waiting in the lobby, so a passed-on "
                        "invitation lets a stranger in with the pupils."
                    ),
                    next_step=_OPTIONS + _LOBBY_FIX,
                    evidence={
                        **evidence,
                        "permitted_lobby_scopes": list(params.allowed_lobby_scopes),
                    },
                    sources=sources,
                )
            )
        if dial_in_bypass:
            outcomes.append(
                Outcome(
                    verdict=Verdict.BREACH,
                    subject_key="dial_in_bypass",
                    observed="phone callers bypass the lobby",
                    message=(
                        f"In {label}, anyone who dials in by phone skips the lobby, and only a "
                        "masked number shows who they are."
                    ),
                    next_step=_OPTIONS
                    + "turn off People dialing in can bypass the lobby and Save.",
                    evidence=evidence,
                    sources=sources,
                )
            )
        if presenters is not None and presenters not in params.allowed_presenters:
            who = {
                "everyone": "everyone, pupils and visitors included,",
                "organization": "everyone in the school, pupils included,",
            }.get(presenters, f"the people the presenter setting {presenters!r} names")
            outcomes.append(
                Outcome(
                    verdict=Verdict.BREACH,
                    subject_key="allowed_presenters",
                    observed=f"presenters: {presenters}",
                    message=(
                        f"In {label}, {who} can present, which lets them share their screen, "
                        "record, and remove or mute other people."
                    ),
                    next_step=_OPTIONS + _PRESENTERS_FIX,
                    evidence={**evidence, "permitted_presenters": list(params.allowed_presenters)},
                    sources=sources,
                )
            )
        if outcomes and pupils_unknown:
            # The options are risky only if pupils are in the team; that could not be read.
            return [
                outcome.model_copy(
                    update={
                        "verdict": Verdict.UNKNOWN,
                        "observed": f"{outcome.observed}; pupils not known",
                        "message": (
                            f"{outcome.message} Whether pupils are in this channel meeting's "
                            "team is not known: its members could not be read."
                        ),
                        "sources": ("settings", "channel"),
                    }
                )
                for outcome in outcomes
            ]
        if outcomes:
            return outcomes
        checked = [
            what
            for what, value in (
                ("the lobby holds people from outside the school", lobby_scope),
                ("phone callers wait in the lobby", dial_in_bypass),
                ("pupils cannot present", presenters),
            )
            if value is not None
        ]
        return [
            Outcome(
                verdict=Verdict.OK,
                observed="lobby and presenters restricted",
                message=f"In {label}, {' and '.join(checked)}.",
                evidence=evidence,
                sources=sources,
            )
        ]


RULE = LobbyAdmitsOutsiders()
