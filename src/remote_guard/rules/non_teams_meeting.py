"""A session with pupils arranged on another provider than the school's Teams.

Enforces WPS-3.4 / BSF-3.4 (every contact with pupils goes through the school's approved
channels) through the catalogue's S-CHAN signal, and NG-2 (only channels senior leaders
approved): a calendar invitation for pupils whose ``onlineMeetingProvider`` is not Teams for
Business, or whose body or location carries a join link of another provider (Zoom, Google Meet,
Webex, Whereby, Skype...). Checked from the moment the invitation is on a calendar, so it is
flagged before the lesson starts. Links are kept without their query string and fragment,
because meeting passcodes ride there.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel

from remote_guard.collect.snapshot import Missing, SessionKind, SessionSnapshot
from remote_guard.rules._people import (
    cancelled_or_without_pupils,
    expected_pupils,
    pupil_sources,
    session_label,
)
from remote_guard.rules.base import NoParams, Outcome, RuleContext, Severity, Verdict

TEAMS_PROVIDER = "teamsForBusiness"
# "unknown" is what Graph reports for an event that is not an online meeting; other values name
# a provider that is not Teams for Business.
_NO_PROVIDER = frozenset({TEAMS_PROVIDER, "unknown"})
_CALENDAR_KINDS = frozenset(
    {SessionKind.MEETING, SessionKind.CHANNEL_MEETING, SessionKind.OTHER_PROVIDER}
)
_PROVIDER_NAMES = {
    "skypeForBusiness": "Skype for Business",
    "skypeForConsumer": "Skype",
}
# Host suffix -> the name a teacher knows the service by.
_HOST_NAMES = (
    ("zoom.us", "Zoom"),
    ("zoom.com", "Zoom"),
    ("zoomgov.com", "Zoom"),
    ("meet.google.com", "Google Meet"),
    ("webex.com", "Webex"),
    ("whereby.com", "Whereby"),
    ("gotomeeting.com", "GoTo Meeting"),
    ("goto.com", "GoTo Meeting"),
    ("meet.jit.si", "Jitsi Meet"),
    ("skype.com", "Skype"),
    ("teams.live.com", "Teams (personal account)"),
    ("g.co", "Google Meet"),
    ("meet.app.goo.gl", "Google Meet"),
    ("whatsapp.com", "WhatsApp"),
    ("wa.me", "WhatsApp"),
    ("discord.gg", "Discord"),
    ("discord.com", "Discord"),
    ("facetime.apple.com", "FaceTime"),
    ("bluejeans.com", "BlueJeans"),
    ("chime.aws", "Amazon Chime"),
)


class NonTeamsMeeting:
    id: ClassVar[str] = "non_teams_meeting"
    title: ClassVar[str] = "Session with pupils on another provider than Teams"
    clauses: ClassVar[tuple[str, ...]] = ("WPS-3.4", "BSF-3.4", "NG-2")
    severity: ClassVar[Severity] = Severity.MEDIUM
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = NoParams

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        if snapshot.kind not in _CALENDAR_KINDS or snapshot.scheduled_start is None:
            # Direct calls, chats and "Meet now" meetings come from Teams itself.
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed=f"not a calendar invitation ({snapshot.kind.value})",
                    message="Only sessions arranged by calendar invitation are checked.",
                )
            ]
        skip = cancelled_or_without_pupils(snapshot, what="its provider")
        if skip is not None:
            return [skip]
        pupils = sorted(expected_pupils(snapshot))
        label = session_label(snapshot, context)
        links = list(dict.fromkeys(reduce_link(link) for link in snapshot.foreign_links))
        if snapshot.kind is SessionKind.OTHER_PROVIDER and snapshot.join_url:
            # The event's own online meeting link, when it is not a Teams one.
            links = list(dict.fromkeys([*links, reduce_link(snapshot.join_url)]))
        provider = snapshot.provider
        services: list[str] = []
        if provider is not None and provider not in _NO_PROVIDER:
            services.append(_PROVIDER_NAMES.get(provider, provider))
        services.extend(service_of(link) for link in links)
        services = list(dict.fromkeys(services))
        evidence: dict[str, Any] = {
            "kind": snapshot.kind.value,
            "provider": provider,
            "links": links,
            "expected_pupil_ids": pupils,
            "scheduled_start": snapshot.scheduled_start.isoformat(),
        }
        sources = tuple(dict.fromkeys(("calendar", *pupil_sources(snapshot))))

        if not services and snapshot.kind is SessionKind.OTHER_PROVIDER:
            if provider == TEAMS_PROVIDER:
                # Marked as a Teams meeting, but no Teams join link could be read: not a breach
                # anyone can point to, and not a pass either.
                return [
                    Outcome(
                        verdict=Verdict.UNKNOWN,
                        observed="Teams meeting without a join link",
                        message=(
                            f"{label} is marked as a Teams meeting, but its join link could not "
                            "be read, so whether pupils meet on Teams could not be checked."
                        ),
                        next_step="Check the event in the organiser's calendar; the check "
                        "repeats on the next poll.",
                        evidence=evidence,
                        sources=sources,
                    )
                ]
            services.append("a service other than Teams")
        if not services:
            return [
                Outcome(
                    verdict=Verdict.OK,
                    observed="Teams meeting",
                    message=f"{label} is a Teams meeting with no other provider's link.",
                    evidence=evidence,
                    sources=sources,
                )
            ]
        where = _join(services)
        count = len(pupils)
        return [
            Outcome(
                verdict=Verdict.BREACH,
                observed=f"{where} {'link' if links else 'meeting'}",
                message=(
                    f"{label}, for {count} pupil{'s' if count != 1 else ''}, "
                    + (
                        "is a Teams meeting, but its invitation also gives a link to "
                        if snapshot.kind is not SessionKind.OTHER_PROVIDER
                        else "is set up on "
                    )
                    + where
                    + (f" ({', '.join(links)})" if links else "")
                    + ", which is not one of the school's approved channels."
                ),
                next_step=(
                    "Teacher: hold the session as a Teams meeting from your school account (in "
                    "the class team) and send pupils the new invitation without the other link. "
                    "DSL: check whether pupils already joined it."
                ),
                evidence=evidence,
                sources=sources,
            )
        ]


def reduce_link(link: str) -> str:
    """A link without what may carry a passcode: scheme, host and path only, e.g.
    ``https://us06web.zoom.us/j/85512345678?pwd=x`` -> ``https://us06web.zoom.us/j/85512345678``.
    """
    parts = urlsplit(link.strip())
    if parts.scheme.lower() == "skype":
        # skype:name?call - the account name is the link; the query is the action.
        return f"skype:{parts.path.rstrip('.,;:)]')}"
    host = (parts.hostname or "").lower()
    # A link at the end of a sentence picks up its full stop or bracket.
    path = parts.path.rstrip(".,;:)]'\"")
    return f"{parts.scheme.lower()}://{host}{path}"


def service_of(link: str) -> str:
    """The name of the service a link belongs to (``Zoom``), or its host if not known."""
    if link.lower().startswith("skype:"):
        return "Skype"
    host = (urlsplit(link).hostname or "").lower()
    for suffix, name in _HOST_NAMES:
        if host == suffix or host.endswith("." + suffix):
            return name
    return host or link


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


RULE = NonTeamsMeeting()
