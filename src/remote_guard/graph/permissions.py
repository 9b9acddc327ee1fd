"""Every Graph call remote_guard makes, and the least application permission it needs.

Kept next to the client and checked by a test that runs a full poll against the fake tenant:
each request the poller sends must match a row here. ``docs/setup-entra.md`` is written from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from remote_guard.graph.client import endpoint_name


@dataclass(frozen=True)
class GraphCall:
    """One kind of Graph request."""

    method: str
    endpoint: str  # as endpoint_name() folds it: ids are "{id}"
    permission: str  # least-privileged application permission
    access_policy: bool  # also needs the Teams application access policy
    purpose: str


GRAPH_CALLS: tuple[GraphCall, ...] = (
    GraphCall(
        "GET",
        "/groups/{id}/transitiveMembers",
        "GroupMember.Read.All",
        False,
        "Who is staff, pupil, SLT, DSL (the configured groups); the members of a group that was "
        "invited, and of a channel meeting's team",
    ),
    GraphCall(
        "GET",
        "/groups/{id}/owners",
        "GroupMember.Read.All",
        False,
        "Web sign-in: who owns each class team (its teachers see that class's pupils)",
    ),
    GraphCall(
        "GET",
        "/groups",
        "GroupMember.Read.All",
        False,
        "Find the group behind an invitation sent to a group address ($filter=mail eq ...)",
    ),
    GraphCall(
        "GET",
        "/users/{id}",
        "User.Read.All",
        False,
        "Classify a participant who is in none of the configured groups (e.g. a guest)",
    ),
    GraphCall(
        "GET",
        "/users/{id}/calendarView",
        "Calendars.Read",
        False,
        "Find remote sessions on staff calendars",
    ),
    GraphCall(
        "GET",
        "/users/{id}/calendarView/delta",
        "Calendars.Read",
        False,
        "Find changed sessions on staff calendars",
    ),
    GraphCall(
        "GET",
        "/users/{id}/onlineMeetings",
        "OnlineMeetings.Read.All",
        True,
        "Meeting options (lobby, chat, presenters) by join URL",
    ),
    GraphCall(
        "GET",
        "/users/{id}/onlineMeetings/{id}/attendanceReports",
        "OnlineMeetingArtifact.Read.All",
        True,
        "Who attended, and when (list of reports)",
    ),
    GraphCall(
        "GET",
        "/users/{id}/onlineMeetings/{id}/attendanceReports/{id}/attendanceRecords",
        "OnlineMeetingArtifact.Read.All",
        True,
        "Who attended, and when (join/leave times)",
    ),
    GraphCall(
        "GET",
        "/users/{id}/onlineMeetings/{id}/recordings",
        "OnlineMeetingRecording.Read.All",
        True,
        "Whether a session was recorded",
    ),
    GraphCall(
        "GET",
        "/users/{id}/onlineMeetings/{id}/transcripts",
        "OnlineMeetingTranscript.Read.All",
        True,
        "Whether a session was transcribed",
    ),
    GraphCall(
        "GET",
        "/communications/callRecords",
        "CallRecords.Read.All",
        False,
        "Calls and meetings that took place, by start time (incl. peer-to-peer calls)",
    ),
    GraphCall(
        "GET",
        "/communications/callRecords/{id}",
        "CallRecords.Read.All",
        False,
        "A call's sessions, for who was in a channel meeting when ($expand=sessions)",
    ),
    GraphCall(
        "GET",
        "/communications/callRecords/{id}/participants_v2",
        "CallRecords.Read.All",
        False,
        "Everyone who took part in a call, including guests, anonymous and dial-in",
    ),
    GraphCall(
        "GET",
        "/chats/{id}/messages",
        "Chat.Read.All",
        False,
        "Who posted in a meeting chat or a staff-pupil chat, and when (protected API: request "
        "access)",
    ),
    GraphCall(
        "GET",
        "/users/{id}/chats",
        "Chat.ReadBasic.All",
        False,
        "Staff members' 1:1 and group chats with their members ($expand=members)",
    ),
    GraphCall(
        "GET",
        "/chats/{id}/members",
        # ChatMember.Read.All is the narrowest on its own; Chat.ReadBasic.All, already needed to
        # list chats, also grants this call, so the install needs one permission fewer.
        "Chat.ReadBasic.All",
        False,
        "All members of a chat whose expanded member list hit Graph's 25-member cap",
    ),
    GraphCall(
        "GET",
        "/teams/{id}/channels/{id}/messages/{id}/replies",
        "ChannelMessage.Read.All",
        False,
        "Who posted in a channel meeting's conversation (protected API)",
    ),
    GraphCall(
        "GET",
        "/teams",
        "Team.ReadBasic.All",
        False,
        "The school's teams, to recognise channel meetings (read at most daily)",
    ),
    GraphCall(
        "GET",
        "/teams/{id}/channels",
        "Channel.ReadBasic.All",
        False,
        "The school's channels, to recognise channel meetings (read at most daily)",
    ),
    GraphCall(
        "POST",
        "/users/{id}/events",
        "Calendars.ReadWrite",
        False,
        "Web app: put an SLT member's monitoring drop-in (the lesson's join link, a reminder) into "
        "their own calendar; never a new Teams meeting",
    ),
    GraphCall(
        "GET",
        "/chats/{id}/messages/{id}",
        "Chat.Read.All",
        False,
        "Change notifications: read the one meeting-chat message a notification names, to see "
        "whether a pupil wrote it (protected API: request access)",
    ),
    GraphCall(
        "GET",
        "/teams/{id}/channels/{id}/messages/{id}/replies/{id}",
        "ChannelMessage.Read.All",
        False,
        "Change notifications: read the one reply in a channel meeting's conversation a "
        "notification names (protected API)",
    ),
    GraphCall(
        "POST",
        "/subscriptions",
        "(the watched resource's own: CallRecords.Read.All, Chat.Read.All, "
        "ChannelMessage.Read.All, Calendars.Read)",
        False,
        "Change notifications: subscribe to call records, a live meeting's chat, a staff calendar",
    ),
    GraphCall(
        "PATCH",
        "/subscriptions/{id}",
        "(the watched resource's own)",
        False,
        "Change notifications: renew (and reauthorize) a subscription before it expires",
    ),
    GraphCall(
        "DELETE",
        "/subscriptions/{id}",
        "(the watched resource's own)",
        False,
        "Change notifications: end a meeting's subscriptions after it is over",
    ),
    GraphCall(
        "POST",
        "/beta/subscriptions",
        "OnlineMeetings.Read.All",
        False,
        "Opt-in live roster (Graph beta): subscribe to a live meeting's call events (CallStarted, "
        "CallRosterUpdate, CallEnded)",
    ),
    GraphCall(
        "PATCH",
        "/beta/subscriptions/{id}",
        "OnlineMeetings.Read.All",
        False,
        "Opt-in live roster (Graph beta): renew a meeting's call-events subscription",
    ),
    GraphCall(
        "DELETE",
        "/beta/subscriptions/{id}",
        "OnlineMeetings.Read.All",
        False,
        "Opt-in live roster (Graph beta): end it after the meeting",
    ),
    GraphCall(
        "POST",
        "/$batch",
        "(each item's own)",
        False,
        "Up to 20 of the requests above in one round trip",
    ),
)


def call_for(method: str, path_or_url: str) -> GraphCall | None:
    """The row of :data:`GRAPH_CALLS` a request matches, or None if it is not listed."""
    endpoint = endpoint_name(path_or_url)
    for call in GRAPH_CALLS:
        if call.method == method.upper() and call.endpoint == endpoint:
            return call
    return None


def least_permissions() -> list[str]:
    """The application permissions a full install needs, sorted."""
    return sorted({call.permission for call in GRAPH_CALLS if not call.permission.startswith("(")})
