"""Making things happen in a running fake tenant, as they happen in a live lesson.

:class:`LiveTenant` is how tests, benchmarks and the demo act on the tenant while it serves: a
pupil posts in a meeting's chat, someone joins or leaves a meeting's call, a call ends (so its
call record appears). Each change updates the tenant's state, so Graph reads see it, and the
tenant's notifier then delivers the change notifications Graph would send to whoever subscribed
(see ``fakegraph.notifications``).

Meeting call events (CallStarted, CallRosterUpdate, CallEnded) follow the meeting's join and
leave times. Graph tells a subscriber who joins and leaves from the moment it subscribes, never
who was already in the call, so a test that wants a complete live roster starts the call (the
first person joins) after the subscription exists.

:func:`demo_live_scenario` adds to the demo school what happens once the demo is running: a
pupil writes in the live Robins lesson's channel conversation, and in a small group lesson that
starts a minute in, two pupils leave so the teacher is alone with the third, who has no
one-to-one registration.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from remote_guard.fakegraph.notifications import Delivery, FakeSubscription, Notifier
from remote_guard.fakegraph.scenario import (
    AttendanceSpec,
    ChatMessageSpec,
    MeetingSettingsSpec,
    MeetingSpec,
    Scenario,
)
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.fakegraph.tenant import Identity, Presence, TenantState
from remote_guard.settings import NotificationResource, NotificationSettings
from remote_guard.subscriptions.hub import ReceiverServer

# A joiner who does not say when they will leave stays this long (or to the meeting's end).
DEFAULT_STAY = timedelta(minutes=30)


class LiveTenant:
    """Live changes to a running :class:`FakeTenantServer`, with their notifications."""

    def __init__(self, server: FakeTenantServer) -> None:
        """Trust the tenant's own CA for notification endpoints (receivers under test are served
        with its certificate: :meth:`receiver_tls`).

        Raises:
            RuntimeError: the server is not started.
        """
        self.server = server
        self.state: TenantState = server.state
        self._moment: datetime | None = None
        self.notifier.trust(server.ca_path)
        server.port  # noqa: B018 - raises if the server is not started

    @property
    def notifier(self) -> Notifier:
        notifier: Notifier = self.state.notifications
        return notifier

    def receiver_tls(self) -> tuple[Path, Path]:
        """(certificate, key) for a receiver on loopback, issued by the fake tenant's CA."""
        return self.server.state_dir / "server.pem", self.server.state_dir / "server.key"

    def close(self) -> None:
        """Stop delivering notifications (idempotent)."""
        self.notifier.stop()

    # --- reading what was subscribed and delivered ------------------------------------------

    def subscriptions(self, resource_contains: str = "") -> list[FakeSubscription]:
        now = self.state.now()
        return [
            s for s in self.notifier.active(now) if resource_contains.lower() in s.resource.lower()
        ]

    def deliveries(self) -> list[Delivery]:
        with self.state.lock:
            return list(self.notifier.deliveries)

    # --- live changes -------------------------------------------------------------------------

    def _who(self, key: str) -> Identity:
        try:
            return self.state.identities[key]
        except KeyError:
            raise KeyError(f"no person or outside joiner has the key {key!r}") from None

    @contextmanager
    def together(self) -> Iterator[None]:
        """Changes made inside happen at one moment, seen by one look (people admitted from the
        lobby together make one roster update, so nobody is briefly alone)."""
        with self.state.lock:
            self._moment = self.state.now()
            try:
                yield
            finally:
                self._moment = None

    def _now(self, at: datetime | None) -> datetime:
        return at or self._moment or self.state.now()

    def _changed(self, at: datetime) -> None:
        self.notifier.rewind(at)
        self.notifier.poke()

    def post(
        self, where: str, sender: str, text: str = "hello", *, at: datetime | None = None
    ) -> str:
        """``sender`` (a person key) writes ``text`` in a meeting's chat (``where`` is a meeting
        key; a channel meeting's is a reply to its post) or in a direct chat (its key or id).
        Returns the message id.

        Raises:
            KeyError: no such meeting, chat or person.
            ValueError: the meeting has no Teams chat in this tenant.
        """
        moment = self._now(at)
        who = self._who(sender)
        if where in self.state.meetings:
            message = self.state.post_meeting_message(where, who, text, moment)
        else:
            chat_id = self.state.chat_id(where) or where
            message = self.state.post_chat_message(chat_id, who, text, moment)
        self._changed(moment)
        return message.id

    def join(
        self, meeting: str, who: str, *, at: datetime | None = None, until: datetime | None = None
    ) -> None:
        """``who`` (a person or outside joiner key) joins the meeting's call now (or ``at``) and
        stays until ``until`` (default: the meeting's end, or half an hour if that is sooner).

        Raises:
            KeyError: no such meeting or person.
        """
        with self.state.lock:
            moment = self._now(at)
            current = self.state.meetings[meeting]
            identity = self._who(who)
            stay = until or max(current.end, moment + DEFAULT_STAY)
            presences = list(current.presences)
            for index, presence in enumerate(presences):
                if presence.who.id == identity.id:
                    presences[index] = Presence(
                        identity, tuple(sorted((*presence.intervals, (moment, stay))))
                    )
                    break
            else:
                presences.append(Presence(identity, ((moment, stay),)))
            self.state.replace_attendance(meeting, tuple(presences))
        self._changed(moment)

    def leave(self, meeting: str, who: str, *, at: datetime | None = None) -> None:
        """``who`` leaves the meeting's call now (or ``at``).

        Raises:
            KeyError: no such meeting or person.
            ValueError: they are not in the call at that moment.
        """
        with self.state.lock:
            moment = self._now(at)
            current = self.state.meetings[meeting]
            identity = self._who(who)
            presences = list(current.presences)
            for index, presence in enumerate(presences):
                if presence.who.id == identity.id and any(
                    start <= moment < end for start, end in presence.intervals
                ):
                    spans = tuple(
                        (start, moment if start <= moment < end else end)
                        for start, end in presence.intervals
                        if start != moment
                    )
                    presences[index] = Presence(identity, spans)
                    break
            else:
                raise ValueError(f"{who} is not in the call of {meeting} at {moment.isoformat()}")
            self.state.replace_attendance(meeting, tuple(p for p in presences if p.intervals))
        self._changed(moment)

    def end_call(self, meeting: str, *, at: datetime | None = None) -> None:
        """The meeting's call ends now (or ``at``): everyone still in it leaves, and its call
        record appears (after the tenant's ``call_record_delay_seconds``).

        Raises:
            KeyError: no such meeting.
        """
        with self.state.lock:
            moment = self._now(at)
            current = self.state.meetings[meeting]
            presences = []
            for presence in current.presences:
                spans = tuple(
                    (start, min(end, moment)) for start, end in presence.intervals if start < moment
                )
                if spans:
                    presences.append(Presence(presence.who, spans))
            self.state.replace_attendance(meeting, tuple(presences))
        self._changed(moment)

    def lifecycle(self, subscription_id: str, event: str) -> Delivery:
        """Send a lifecycle notification for a subscription (see :meth:`Notifier.lifecycle`).

        Raises:
            KeyError: no such subscription.
            ValueError: an unknown event, or no lifecycle URL.
        """
        return self.notifier.lifecycle(subscription_id, event)


def receiver_for(live: LiveTenant, *, host: str = "127.0.0.1") -> ReceiverServer:
    """A receiver bound on loopback (a free port), serving HTTPS with the fake tenant's
    certificate, which the tenant trusts (start it with the receiver app).

    Raises:
        OSError: no port can be bound.
    """
    certfile, keyfile = live.receiver_tls()
    return ReceiverServer(host, 0, certfile=certfile, keyfile=keyfile)


def notification_settings(
    receiver: ReceiverServer,
    *,
    client_state: str | None = None,
    roster_events: bool = True,
    resources: tuple[NotificationResource, ...] = ("call_records", "meeting_chats"),
    mail_after_seconds: int = 0,
) -> NotificationSettings:
    """``[notifications]`` for a remote_guard pointed at ``receiver`` (on, with roster events)."""
    from pydantic import SecretStr

    return NotificationSettings(
        enabled=True,
        notification_url=receiver.url("/graph-notifications"),
        client_state=SecretStr(client_state or secrets.token_hex(32)),
        resources=resources,
        roster_events=roster_events,
        receiver="poller",
        listen_host=receiver.host,
        listen_port=receiver.port,
        live_alert_mail_after_seconds=mail_after_seconds,
    )


# --- the demo --------------------------------------------------------------------------------------

DEMO_LIVE_MEETING = "bramham-hazel-phonics-group-live"
DEMO_LIVE_STORY = (
    "Live, once the demo is running: about 45 s in, a pupil writes in the live Robins reading "
    "lesson's conversation; about a minute in, a small phonics group starts, and at about 90 s "
    "two pupils leave, so the teacher is alone with the third, who has no one-to-one "
    "registration. With change notifications both show within seconds: the pupil chat finding, "
    "and a live alert on the SLT board (SLT sign-in) with the link to drop in."
)


def demo_live_scenario(scenario: Scenario) -> Scenario:
    """The demo school with what happens once the demo runs (see the module docstring).

    Raises:
        ValueError: the scenario is not the demo school (its Robins lesson or Hazel class is
            missing).
    """
    robins = next((m for m in scenario.meetings if m.key == "shadwell-robins-reading"), None)
    hazel = next((g for g in scenario.groups if g.key == "bramham-hazel"), None)
    if robins is None or hazel is None:
        raise ValueError("demo_live_scenario needs the demo school (demo_scenario())")
    people = {person.key: person for person in scenario.people}
    chatter = next(
        (
            message.sender
            for message in robins.chat
            if message.sender in people and people[message.sender].kind == "pupil"
        ),
        None,
    )
    if chatter is None:
        raise ValueError("the demo's Robins lesson has no pupil writing in its chat")
    robins_live = robins.model_copy(
        update={
            "chat": [
                *robins.chat,
                ChatMessageSpec(at="now+45s", sender=chatter, text="can i read my new book now"),
            ]
        }
    )
    pupils = [key for key in hazel.members if key in people and people[key].kind == "pupil"][-3:]
    teacher = "r.dunn"
    group = MeetingSpec(
        key=DEMO_LIVE_MEETING,
        subject="Year 2 Hazel Class - Phonics group: split digraphs",
        organizer=teacher,
        start="now+1m",
        end="now+25m",
        invitees=pupils,
        settings=MeetingSettingsSpec(allow_meeting_chat="disabled", lobby_scope="invited"),
        # The teacher admits the group from the lobby together; two leave early.
        attendance=[
            AttendanceSpec(who=teacher, intervals=[("now+60s", "now+26m")]),
            AttendanceSpec(who=pupils[0], intervals=[("now+60s", "now+85s")]),
            AttendanceSpec(who=pupils[1], intervals=[("now+60s", "now+90s")]),
            AttendanceSpec(who=pupils[2], intervals=[("now+60s", "now+24m")]),
        ],
    )
    meetings = [robins_live if m.key == robins.key else m for m in scenario.meetings]
    return scenario.model_copy(update={"meetings": [*meetings, group]})
