"""Graph v1.0 JSON shapes for the fake tenant's objects, property names as Graph spells them."""

from __future__ import annotations

import base64
from typing import Any
from zoneinfo import ZoneInfo

from remote_guard.fakegraph import _ids
from remote_guard.fakegraph.tenant import (
    WINDOWS_ZONES,
    CallSession,
    Channel,
    Chat,
    ChatMessage,
    Group,
    Identity,
    Meeting,
    Presence,
    Recording,
    StoredEvent,
    Team,
    TenantState,
    teamwork_identity_set,
    user_identity_type,
)

# Evolvable enums: members added after ``unknownFutureValue`` are hidden from clients that did
# not send ``Prefer: include-unknown-enum-members``.
_LATE_LOBBY_SCOPES = frozenset({"invited", "organizationExcludingGuests"})
_LATE_PARTICIPANT_ROLES = frozenset({"producer", "coorganizer"})
_LATE_MESSAGE_TYPES = frozenset({"systemEventMessage"})

USER_DEFAULT_PROPERTIES = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
USER_PROPERTIES = (
    *USER_DEFAULT_PROPERTIES,
    "accountEnabled",
    "userType",
    "createdDateTime",
    "department",
    "companyName",
    "employeeId",
    "usageLocation",
    "otherMails",
    "proxyAddresses",
    "mailNickname",
    "externalUserState",
    "onPremisesSyncEnabled",
    "assignedLicenses",
    "creationType",
    "deletedDateTime",
)
GROUP_PROPERTIES = (
    "id",
    "deletedDateTime",
    "classification",
    "createdDateTime",
    "creationOptions",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "onPremisesSyncEnabled",
    "proxyAddresses",
    "renewedDateTime",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "securityEnabled",
    "securityIdentifier",
    "visibility",
)


def enum_value(value: str, late: frozenset[str], include_unknown: bool) -> str:
    return value if include_unknown or value not in late else "unknownFutureValue"


# --- directory -----------------------------------------------------------------------------------


def user_json(user: Identity, state: TenantState) -> dict[str, Any]:
    """Every property the fake knows for a user; callers project to defaults or $select."""
    given, _, surname = user.display_name.partition(" ")
    return {
        "businessPhones": [],
        "displayName": user.display_name,
        "givenName": given or None,
        "jobTitle": user.job_title,
        "mail": user.email,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": "en-GB" if user.kind == "member" else None,
        "surname": surname or None,
        "userPrincipalName": user.upn,
        "id": user.id,
        "accountEnabled": True,
        "userType": "Guest" if user.kind == "guest" else "Member",
        "createdDateTime": _ids.iso_z(state.reference_now.replace(month=1, day=1)),
        "department": None,
        "companyName": None,
        "employeeId": None,
        "usageLocation": "GB",
        "otherMails": [],
        "proxyAddresses": [f"SMTP:{user.email}"] if user.email else [],
        "mailNickname": (user.upn or user.id).split("@")[0],
        "externalUserState": "Accepted" if user.kind == "guest" else None,
        "onPremisesSyncEnabled": None,
        "assignedLicenses": [],
        "creationType": "Invitation" if user.kind == "guest" else None,
        "deletedDateTime": None,
    }


def group_json(group: Group, state: TenantState) -> dict[str, Any]:
    return {
        "id": group.id,
        "deletedDateTime": None,
        "classification": None,
        "createdDateTime": _ids.iso_z(group.created),
        "creationOptions": ["Team"] if group.is_team else [],
        "description": None,
        "displayName": group.display_name,
        "expirationDateTime": None,
        "groupTypes": ["Unified"] if group.is_team else [],
        "isAssignableToRole": None,
        "mail": group.mail,
        "mailEnabled": True,
        "mailNickname": group.mail_nickname,
        "membershipRule": None,
        "onPremisesSyncEnabled": None,
        "proxyAddresses": [f"SMTP:{group.mail}"],
        "renewedDateTime": _ids.iso_z(group.created),
        "resourceBehaviorOptions": [],
        "resourceProvisioningOptions": ["Team"] if group.is_team else [],
        "securityEnabled": not group.is_team,
        "securityIdentifier": "S-1-12-1-" + _ids.digits(group.id, count=10),
        "visibility": "Private" if group.is_team else None,
    }


# --- calendar ------------------------------------------------------------------------------------


def event_json(event: StoredEvent, *, zone: str | None, basic: bool) -> dict[str, Any]:
    """An event as calendarView returns it. ``zone`` is an Outlook zone name for start/end.

    ``basic``: the token has only Calendars.ReadBasic, which hides the body.
    """
    zone_name, tz = _zone(zone or "UTC")
    data: dict[str, Any] = {
        "@odata.etag": f'W/"{event.change_key}"',
        "id": event.id,
        "createdDateTime": _ids.iso_z(event.created, 7),
        "lastModifiedDateTime": _ids.iso_z(event.last_modified, 7),
        "changeKey": event.change_key,
        "categories": [],
        "transactionId": event.transaction_id,
        "originalStartTimeZone": "UTC",
        "originalEndTimeZone": "UTC",
        "iCalUId": event.ical_uid,
        "uid": event.ical_uid,
        "reminderMinutesBeforeStart": 15,
        "isReminderOn": True,
        "hasAttachments": False,
        "subject": event.subject,
        "bodyPreview": event.body_preview,
        "importance": "normal",
        "sensitivity": "normal",
        "isAllDay": False,
        "isCancelled": event.is_cancelled,
        "isOrganizer": event.is_organizer,
        "responseRequested": True,
        "seriesMasterId": event.series_master_id,
        "showAs": "free" if event.is_cancelled else "busy",
        "type": _event_type(event),
        "webLink": (
            "https://outlook.office365.com/owa/?itemid="
            f"{event.id.replace('=', '%3D')}&exvsurl=1&path=/calendar/item"
        ),
        "onlineMeetingUrl": None,
        "isOnlineMeeting": event.is_online,
        "onlineMeetingProvider": event.provider,
        "allowNewTimeProposals": True,
        "occurrenceId": (
            f"OID.{event.series_master_id}.{event.start:%Y-%m-%d}"
            if event.series_master_id
            else None
        ),
        "isDraft": False,
        "hideAttendees": False,
        "responseStatus": {
            "response": "organizer" if event.is_organizer else "notResponded",
            "time": "0001-01-01T00:00:00Z",
        },
        "body": {"contentType": event.body_content_type, "content": event.body_html},
        "start": {
            "dateTime": _ids.outlook_datetime(event.start.astimezone(tz)),
            "timeZone": zone_name,
        },
        "end": {"dateTime": _ids.outlook_datetime(event.end.astimezone(tz)), "timeZone": zone_name},
        "location": _location(event.location),
        "locations": [_location(event.location)] if event.location else [],
        "recurrence": None,
        "attendees": [dict(attendee) for attendee in event.attendees],
        "organizer": {
            "emailAddress": {"name": event.organizer.name, "address": event.organizer.address}
        },
        "onlineMeeting": dict(event.online_meeting) if event.online_meeting else None,
    }
    if event.original_start is not None:
        # Graph returns originalStart (always UTC) for occurrences and exceptions only.
        data["originalStart"] = _ids.iso_z(event.original_start)
    if basic:
        del data["body"]
        del data["bodyPreview"]
    return data


def _event_type(event: StoredEvent) -> str:
    if not event.series_master_id:
        return "singleInstance"
    # An occurrence moved away from its place in the series is an exception.
    moved = event.original_start is not None and event.original_start != event.start
    return "exception" if moved else "occurrence"


# What $select may name on an event (everything event_json writes).
EVENT_PROPERTIES = frozenset(
    {
        "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories",
        "transactionId", "originalStartTimeZone", "originalEndTimeZone", "iCalUId", "uid",
        "reminderMinutesBeforeStart", "isReminderOn", "hasAttachments", "subject", "bodyPreview",
        "importance", "sensitivity", "isAllDay", "isCancelled", "isOrganizer",
        "responseRequested", "seriesMasterId", "showAs", "type", "webLink", "onlineMeetingUrl",
        "isOnlineMeeting", "onlineMeetingProvider", "allowNewTimeProposals", "occurrenceId",
        "isDraft", "hideAttendees", "responseStatus", "body", "start", "end", "location",
        "locations", "recurrence", "attendees", "organizer", "onlineMeeting", "originalStart",
    }
)  # fmt: skip


def _location(display_name: str | None) -> dict[str, Any]:
    if not display_name:
        return {
            "displayName": "",
            "locationType": "default",
            "uniqueIdType": "unknown",
            "address": {},
            "coordinates": {},
        }
    return {
        "displayName": display_name,
        "locationType": "default",
        "uniqueId": display_name,
        "uniqueIdType": "private",
    }


def _zone(name: str) -> tuple[str, ZoneInfo]:
    zone = known_zone(name)
    return (name, zone) if zone is not None else ("UTC", ZoneInfo("UTC"))


def known_zone(name: str) -> ZoneInfo | None:
    """The zone for an Outlook time zone name (Windows or IANA), or None if unknown."""
    try:
        return ZoneInfo(WINDOWS_ZONES.get(name, name))
    except (ValueError, KeyError, OSError):
        return None


# --- online meetings -----------------------------------------------------------------------------


def _meeting_user(identity: Identity | None, tenant_id: str, user_id: str | None) -> dict[str, Any]:
    return {
        "application": None,
        "applicationInstance": None,
        "device": None,
        "phone": None,
        "guest": None,
        "user": {
            "id": user_id,
            "displayName": None,
            "tenantId": identity.tenant_id if identity else tenant_id,
            "identityProvider": "AAD",
        },
    }


def online_meeting_json(
    meeting: Meeting, state: TenantState, *, include_unknown: bool
) -> dict[str, Any]:
    organizer = meeting.organizer
    attendees = []
    for user_id in meeting.invited_user_ids:
        user = state.users.get(user_id)
        attendees.append(
            {
                "identity": _meeting_user(user, state.tenant_id, user_id),
                "upn": user.upn if user else None,
                "role": enum_value("attendee", _LATE_PARTICIPANT_ROLES, include_unknown),
            }
        )
    invited_addresses = {(state.users[uid].email or "").lower() for uid in meeting.invited_user_ids}
    for attendee in meeting.attendees:
        address = attendee.address.lower()
        if address in invited_addresses or any(
            g.mail.lower() == address for g in state.groups.values()
        ):
            continue
        if address == (organizer.email or "").lower():
            continue
        attendees.append(
            {
                "identity": _meeting_user(None, state.tenant_id, None),
                "upn": attendee.address,
                "role": "attendee",
            }
        )
    settings = meeting.settings
    chat_info = {
        "threadId": meeting.thread_id,
        "messageId": meeting.message_id,
        "replyChainMessageId": meeting.message_id if meeting.is_channel_meeting else None,
    }
    return {
        "id": meeting.online_meeting_id,
        "creationDateTime": _ids.iso_z(meeting.created, 7),
        "startDateTime": _ids.iso_z(meeting.start, 7),
        "endDateTime": _ids.iso_z(meeting.end, 7),
        "joinWebUrl": meeting.join_url,
        "subject": meeting.subject,
        "outerMeetingAutoAdmittedUsers": None,
        "capabilities": [],
        "externalId": None,
        "videoTeleconferenceId": meeting.video_teleconference_id,
        "isEntryExitAnnounced": True,
        "allowedPresenters": settings.allowed_presenters,
        "allowAttendeeToEnableMic": True,
        "allowAttendeeToEnableCamera": True,
        "allowMeetingChat": settings.allow_meeting_chat,
        "shareMeetingChatHistoryDefault": "none",
        "allowTeamworkReactions": True,
        "allowParticipantsToChangeName": False,
        "allowRecording": True,
        "allowTranscription": True,
        "recordAutomatically": settings.record_automatically,
        "watermarkProtection": None,
        "meetingTemplateId": None,
        "broadcastSettings": None,
        "audioConferencing": {
            "conferenceId": meeting.conference_id,
            "tollNumber": "+44 20 3855 4748",
            "tollFreeNumber": None,
            "tollNumbers": ["+44 20 3855 4748"],
            "tollFreeNumbers": [],
            "dialinUrl": f"https://dialin.teams.microsoft.com/{meeting.conference_id}",
        },
        "chatInfo": chat_info,
        "joinInformation": {
            "content": "data:text/html,"
            + f"%3Ca href%3D%22{meeting.join_url}%22%3EJoin the meeting now%3C%2Fa%3E",
            "contentType": "html",
        },
        "joinMeetingIdSettings": {
            "isPasscodeRequired": True,
            "joinMeetingId": meeting.join_meeting_id,
            "passcode": meeting.passcode,
        },
        "lobbyBypassSettings": {
            "scope": enum_value(settings.lobby_scope, _LATE_LOBBY_SCOPES, include_unknown),
            "isDialInBypassEnabled": settings.dial_in_bypass,
        },
        "participants": {
            "organizer": {
                "identity": _meeting_user(organizer, state.tenant_id, organizer.id),
                "upn": organizer.upn,
                "role": "presenter",
            },
            "attendees": attendees,
        },
        "chatRestrictions": None,
    }


# --- attendance ----------------------------------------------------------------------------------


def attendance_report_json(session: CallSession) -> dict[str, Any]:
    return {
        "id": session.report_id,
        "totalParticipantCount": len(session.presences),
        "meetingStartDateTime": _ids.iso_z(session.start, 7),
        "meetingEndDateTime": _ids.iso_z(session.end, 7),
        "attendanceRecords": [],
    }


def attendance_record_json(presence: Presence, meeting: Meeting) -> dict[str, Any]:
    who = presence.who
    if who.id == meeting.organizer.id:
        role = "Organizer"
    elif meeting.settings.allowed_presenters == "everyone" or (
        meeting.settings.allowed_presenters == "organization" and who.kind == "member"
    ):
        role = "Presenter"
    else:
        role = "Attendee"
    return {
        "id": who.id,
        # Someone who joined by link typed a name only; Teams has no address for them.
        "emailAddress": None if who.kind == "anonymous" else who.email,
        "totalAttendanceInSeconds": round(presence.seconds),
        "role": role,
        "registrationId": None,
        "identity": attendance_identity(who),
        "attendanceIntervals": [
            {
                "joinDateTime": _ids.iso_z(start, 7),
                "leaveDateTime": _ids.iso_z(end, 7),
                "durationInSeconds": round((end - start).total_seconds()),
            }
            for start, end in presence.intervals
        ],
    }


def attendance_identity(who: Identity) -> dict[str, Any]:
    """An attendance record's ``identity``.

    Graph documents it as a communicationsUserIdentity (an Entra user: object id and tenant) or
    an azureCommunicationServicesUserIdentity (someone without an Entra account, who joined
    through Teams' Azure Communication Services front end: no tenant). An anonymous joiner is the
    second kind, named by the display name they typed. A bot is an application identity.
    """
    if who.kind == "bot":
        return {
            "@odata.type": "#microsoft.graph.communicationsApplicationIdentity",
            "id": who.id,
            "displayName": who.display_name,
            "tenantId": None,
        }
    if who.kind == "anonymous":
        return {
            "@odata.type": "#microsoft.graph.azureCommunicationServicesUserIdentity",
            "id": who.id,
            "displayName": who.display_name,
            "azureCommunicationServicesResourceId": None,
        }
    return {
        "@odata.type": "#microsoft.graph.communicationsUserIdentity",
        "id": who.id,
        "displayName": who.display_name,
        "tenantId": who.tenant_id,
    }


# --- call records --------------------------------------------------------------------------------

_IDENTITY_SET_KEYS = (
    "acsUser",
    "spoolUser",
    "phone",
    "guest",
    "encrypted",
    "onPremises",
    "acsApplicationInstance",
    "spoolApplicationInstance",
    "applicationInstance",
    "application",
    "device",
    "user",
    "azureCommunicationServicesUser",
)


def communications_identity_set(who: Identity) -> dict[str, Any]:
    """A communicationsIdentitySet with exactly one identity filled in."""
    identity: dict[str, Any] = dict.fromkeys(_IDENTITY_SET_KEYS)
    if who.kind == "bot":
        identity["application"] = {"id": who.id, "displayName": who.display_name}
    elif who.kind == "anonymous":
        # communicationsGuestIdentity: "joined the communication without authentication"; it
        # has an email property (the address if the joiner gave one) and no tenant.
        identity["guest"] = {"id": who.id, "displayName": who.display_name, "email": who.email}
    elif who.kind == "phone":
        identity["phone"] = {"id": who.id, "displayName": who.display_name}
    else:
        identity["user"] = {
            "id": who.id,
            "displayName": who.display_name,
            "tenantId": who.tenant_id,
            "userPrincipalName": who.upn,
        }
    return identity


def participant_json(who: Identity) -> dict[str, Any]:
    return {
        "id": who.id,
        "identity": communications_identity_set(who),
        "administrativeUnitInfos": [],
    }


def call_record_json(session: CallSession) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.callRecords.callRecord",
        "version": 1,
        "type": session.kind,
        "modalities": list(session.modalities),
        "lastModifiedDateTime": _ids.iso_z(session.end, 7),
        "startDateTime": _ids.iso_z(session.start, 7),
        "endDateTime": _ids.iso_z(session.end, 7),
        "id": session.id,
        "joinWebUrl": session.join_url,
        # Deprecated properties stopped returning data on 2026-06-30.
        "organizer": None,
        "participants": [],
        "organizer_v2": participant_json(session.organizer),
    }


def sessions_json(session: CallSession, *, segments: bool) -> list[dict[str, Any]]:
    out = []
    callee = {
        "@odata.type": "#microsoft.graph.callRecords.serviceEndpoint",
        "userAgent": {
            "@odata.type": "#microsoft.graph.callRecords.serviceUserAgent",
            "role": "conferencing" if session.kind == "groupCall" else "unknown",
            "applicationVersion": None,
            "headerValue": None,
        },
    }
    for index, presence in enumerate(session.presences):
        caller = {
            "@odata.type": "#microsoft.graph.callRecords.participantEndpoint",
            "identity": communications_identity_set(presence.who),
            "userAgent": {
                "@odata.type": "#microsoft.graph.callRecords.clientUserAgent",
                "platform": "windows",
                "productFamily": "teams",
                "applicationVersion": None,
                "headerValue": None,
            },
        }
        for part, (start, end) in enumerate(presence.intervals):
            session_id = _ids.guid(session.id, "session", f"{index}.{part}")
            item: dict[str, Any] = {
                "id": session_id,
                "modalities": list(session.modalities),
                "startDateTime": _ids.iso_z(start, 7),
                "endDateTime": _ids.iso_z(end, 7),
                "isTest": False,
                "failureInfo": None,
                "caller": caller,
                "callee": callee,
            }
            if segments:
                item["segments"] = [
                    {
                        "id": session_id,
                        "startDateTime": _ids.iso_z(start, 7),
                        "endDateTime": _ids.iso_z(end, 7),
                        "caller": caller,
                        "callee": callee,
                        "failureInfo": None,
                        "media": [],
                    }
                ]
            out.append(item)
    return out


# --- chats and messages --------------------------------------------------------------------------


def chat_message_json(
    message: ChatMessage,
    *,
    include_unknown: bool,
    team_id: str | None = None,
    channel_id: str | None = None,
    tenant_id: str,
) -> dict[str, Any]:
    stamp = _ids.iso_z(message.created, 3)
    if message.event_detail is not None:
        message_type = enum_value("systemEventMessage", _LATE_MESSAGE_TYPES, include_unknown)
        sender: dict[str, Any] | None = None
        body = {"contentType": "html", "content": "<systemEventMessage/>"}
    else:
        message_type = "message"
        body = {"contentType": "html", "content": message.text}
        if message.sender is not None:
            sender = teamwork_identity_set(message.sender)
        else:
            bot_id = _ids.guid(tenant_id, "bot", message.bot_name or "bot")
            sender = {
                "application": {
                    "@odata.type": "#microsoft.graph.teamworkApplicationIdentity",
                    "id": bot_id,
                    "displayName": message.bot_name,
                    "applicationIdentityType": "bot",
                },
                "device": None,
                "user": None,
            }
    in_channel = team_id is not None
    data: dict[str, Any] = {
        "id": message.id,
        "replyToId": message.reply_to_id,
        "etag": message.id,
        "messageType": message_type,
        "createdDateTime": stamp,
        "lastModifiedDateTime": stamp,
        "lastEditedDateTime": None,
        "deletedDateTime": None,
        "subject": message.subject,
        "summary": None,
        "chatId": None if in_channel else message.chat_id,
        "importance": "normal",
        "locale": "en-us",
        "webUrl": (
            f"https://teams.microsoft.com/l/message/{message.chat_id}/{message.id}"
            if in_channel
            else None
        ),
        "channelIdentity": {"teamId": team_id, "channelId": channel_id} if in_channel else None,
        "policyViolation": None,
        "eventDetail": message.event_detail,
        "from": sender,
        "body": body,
        "attachments": [],
        "mentions": [],
        "reactions": [],
        "messageHistory": [],
    }
    if message.event_detail is None:
        del data["eventDetail"]
    return data


def conversation_member_json(chat: Chat, member: Identity) -> dict[str, Any]:
    """A chat member as Graph lists it (an aadUserConversationMember)."""
    return {
        "@odata.type": "#microsoft.graph.aadUserConversationMember",
        "id": base64.b64encode(f"{chat.id}##{member.id}".encode()).decode(),
        "roles": (
            ["owner"]
            if member.id in chat.owner_ids or chat.chat_type == "oneOnOne"
            else (["guest"] if member.kind in ("guest", "external") else [])
        ),
        "displayName": member.display_name,
        "visibleHistoryStartDateTime": "0001-01-01T00:00:00Z",
        "userId": member.id,
        "email": member.email,
        "tenantId": member.tenant_id,
    }


def chat_json(
    chat: Chat, state: TenantState, *, expand_members: bool, member_cap: int | None = None
) -> dict[str, Any]:
    """A chat; with ``expand_members`` its members, at most ``member_cap`` of them (Graph's
    documented known issue: a chat list expanded with members returns at most 25)."""
    meeting = state.meetings.get(chat.meeting_key) if chat.meeting_key else None
    now = state.now()
    visible = [m.created for m in chat.messages if m.created <= now]
    last_updated = max([chat.created, *visible])
    data: dict[str, Any] = {
        "id": chat.id,
        "topic": chat.topic,
        "createdDateTime": _ids.iso_z(chat.created, 3),
        "lastUpdatedDateTime": _ids.iso_z(last_updated, 3),
        "chatType": chat.chat_type,
        "webUrl": (
            f"https://teams.microsoft.com/l/chat/{chat.id.replace(':', '%3a').replace('@', '%40')}"
            f"/0?tenantId={state.tenant_id}"
        ),
        "tenantId": state.tenant_id,
        "isHiddenForAllMembers": False,
        "viewpoint": None,
        "onlineMeetingInfo": None,
    }
    if meeting is not None:
        data["onlineMeetingInfo"] = {
            "calendarEventId": None,
            "joinWebUrl": meeting.join_url,
            "organizer": {
                "id": meeting.organizer.id,
                "displayName": None,
                "userIdentityType": user_identity_type(meeting.organizer),
                "tenantId": meeting.organizer.tenant_id,
            },
        }
    if expand_members:
        members = chat.members if member_cap is None else chat.members[:member_cap]
        data["members"] = [conversation_member_json(chat, member) for member in members]
    return data


# --- teams ---------------------------------------------------------------------------------------


def team_json(team: Team, state: TenantState) -> dict[str, Any]:
    return {
        "id": team.id,
        "createdDateTime": _ids.iso_z(team.created, 3),
        "displayName": team.display_name,
        "description": None,
        "internalId": f"19:{_ids.digest(team.id, size=16).hex()}@thread.tacv2",
        "classification": None,
        "specialization": "educationStandard",
        "visibility": "private",
        "webUrl": f"https://teams.microsoft.com/l/team/{team.id}/conversations?tenantId={state.tenant_id}",
        "isArchived": False,
        "tenantId": state.tenant_id,
        "isMembershipLimitedToOwners": False,
    }


def channel_json(channel: Channel, state: TenantState) -> dict[str, Any]:
    encoded = channel.id.replace(":", "%3a").replace("@", "%40")
    return {
        "id": channel.id,
        "createdDateTime": _ids.iso_z(channel.created, 3),
        "displayName": channel.display_name,
        "description": None,
        "isFavoriteByDefault": None,
        "email": "",
        "tenantId": state.tenant_id,
        "webUrl": (
            f"https://teams.microsoft.com/l/channel/{encoded}/{channel.display_name.replace(' ', '%20')}"
            f"?groupId={channel.team_id}&tenantId={state.tenant_id}"
        ),
        "membershipType": "standard",
        "isArchived": False,
    }


# --- recordings and transcripts ------------------------------------------------------------------


def recording_json(
    recording: Recording, meeting: Meeting, *, base_url: str, user_segment: str
) -> dict[str, Any]:
    organizer = meeting.organizer
    path = (
        f"{base_url}/v1.0/users/{user_segment}/onlineMeetings/{meeting.online_meeting_id}"
        f"/{'transcripts' if recording.kind == 'transcript' else 'recordings'}/{recording.id}/content"
    )
    data: dict[str, Any] = {
        "id": recording.id,
        "meetingId": meeting.online_meeting_id,
        "callId": recording.call_id,
        "contentCorrelationId": recording.content_correlation_id,
        "createdDateTime": _ids.iso_z(recording.created, 7),
        "endDateTime": _ids.iso_z(recording.end, 7),
        "meetingOrganizer": {
            "application": None,
            "device": None,
            "user": {
                "@odata.type": "#microsoft.graph.teamworkUserIdentity",
                "id": organizer.id,
                "displayName": None,
                "userIdentityType": "aadUser",
                "tenantId": organizer.tenant_id,
            },
        },
    }
    if recording.kind == "transcript":
        data["transcriptContentUrl"] = path
    else:
        data["recordingContentUrl"] = path
    return data
