"""Microsoft Graph v1.0 as the fake tenant serves it.

:class:`GraphService` takes a :class:`GraphRequest` (from a socket or a ``$batch`` item) through
the same steps Graph does: forced faults, the bearer token, random throttling, the route, the
app's permissions, the Teams application access policy, then the handler. Handlers are plain
functions so ``$batch`` runs its items in-process through exactly the same code.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request, Response

from remote_guard.fakegraph import _render
from remote_guard.fakegraph._errors import GraphError, graph_error_body
from remote_guard.fakegraph._odata import (
    GraphRequest,
    GraphResponse,
    odata_context,
    odata_string,
    page_size,
    paged,
    parse_datetime,
    parse_select,
    project,
    split_and,
)
from remote_guard.fakegraph.faults import Fault, format_retry_after
from remote_guard.fakegraph.tenant import (
    CallSession,
    ChatMessage,
    DeltaCursor,
    DeltaState,
    Identity,
    Meeting,
    StoredEvent,
    TenantState,
    TokenGrant,
)

JSON_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
    "charset=utf-8"
)

Workload = Literal["directory", "calendar", "teams", "other"]


@dataclass(frozen=True)
class Need:
    """The application permissions any one of which lets a call through."""

    permissions: tuple[str, ...]
    workload: Workload


USER_READ = Need(
    ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
    "directory",
)
GROUP_MEMBER_READ = Need(
    (
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ),
    "directory",
)
# Calendars.ReadBasic is the least privilege for reading events; it hides body and bodyPreview.
CALENDAR_READ = Need(("Calendars.ReadBasic", "Calendars.Read", "Calendars.ReadWrite"), "calendar")
CALENDAR_WRITE = Need(("Calendars.ReadWrite",), "calendar")
# Mail is Exchange Online, as calendars are: a missing permission gives Exchange's error.
MAIL_SEND = Need(("Mail.Send",), "calendar")
MEETINGS_READ = Need(("OnlineMeetings.Read.All", "OnlineMeetings.ReadWrite.All"), "other")
ARTIFACT_READ = Need(("OnlineMeetingArtifact.Read.All",), "other")
RECORDING_READ = Need(("OnlineMeetingRecording.Read.All",), "other")
TRANSCRIPT_READ = Need(("OnlineMeetingTranscript.Read.All",), "other")
CALL_RECORDS_READ = Need(("CallRecords.Read.All",), "other")
CHAT_MESSAGES_READ = Need(("Chat.Read.All", "Chat.ReadWrite.All", "ChatMessage.Read.All"), "teams")
CHATS_READ = Need(("Chat.ReadBasic.All", "Chat.Read.All", "Chat.ReadWrite.All"), "teams")
CHAT_MEMBERS_READ = Need(
    (
        "ChatMember.Read.All",
        "ChatMember.ReadWrite.All",
        "Chat.ReadBasic.All",
        "Chat.Read.All",
        "Chat.ReadWrite.All",
    ),
    "teams",
)
TEAM_READ = Need(
    (
        "Team.ReadBasic.All",
        "TeamSettings.Read.All",
        "TeamSettings.ReadWrite.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ),
    "teams",
)
CHANNEL_READ = Need(
    (
        "Channel.ReadBasic.All",
        "ChannelSettings.Read.All",
        "ChannelSettings.ReadWrite.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ),
    "teams",
)
CHANNEL_MESSAGES_READ = Need(
    ("ChannelMessage.Read.All", "Group.Read.All", "Group.ReadWrite.All"), "teams"
)
# Teams' protected APIs: message content needs Microsoft's approval as well as consent.
PROTECTED_NEEDS = (CHAT_MESSAGES_READ, CHANNEL_MESSAGES_READ)
PROTECTED_API_MESSAGE = (
    "Invoked API requires Protected API access in application-only context when not using "
    "Resource Specific Consent. Visit https://docs.microsoft.com/en-us/graph/teams-protected-apis "
    "for more details."
)

# Graph's documented page limits per API.
MAX_TOP_DIRECTORY = 999
MAX_TOP_CALENDAR = 1000
MAX_TOP_CHAT_MESSAGES = 50
MAX_TOP_CHATS = 50
# A documented known issue of List chats: $expand=members returns at most 25 members per chat.
MAX_EXPANDED_CHAT_MEMBERS = 25
MAX_PAGE_CALL_RECORDS = 60
MAX_PAGE_PARTICIPANTS = 130
CALL_RECORD_RETENTION = timedelta(days=30)
DELTA_UNSUPPORTED = ("$select", "$expand", "$filter", "$orderby", "$search")


@dataclass
class Context:
    """What a handler gets: the request, path parameters, the token grant and the state."""

    request: GraphRequest
    params: dict[str, str]
    grant: TokenGrant
    state: TenantState

    @property
    def now(self) -> datetime:
        return self.state.now()

    def user(self, name: str = "user") -> Identity:
        """The user named by path parameter ``name``.

        Raises:
            GraphError: 404, no such user.
        """
        user = self.state.user(self.params[name])
        if user is None:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{self.params[name]}' does not exist or one of its queried "
                "reference-property objects are not present.",
            )
        return user


Handler = Callable[[Context], GraphResponse]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: tuple[str, ...]  # literal segments, or "{name}" for a parameter
    handler: Handler
    need: Need
    policy_user: str | None = None  # path parameter the Teams access policy must cover

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.pattern):
            return None
        params: dict[str, str] = {}
        for part, segment in zip(self.pattern, segments, strict=True):
            if part.startswith("{"):
                params[part[1:-1]] = segment
            elif part.lower() != segment.lower():
                return None
        return params


class GraphService:
    """Serves Graph v1.0 requests against a :class:`TenantState`."""

    def __init__(self, state: TenantState) -> None:
        self.state = state
        self.routes = _routes()

    def handle(self, request: GraphRequest) -> GraphResponse:
        """Serve one request (never raises: every failure becomes a Graph error response)."""
        request_id = str(uuid.uuid4())
        client_request_id = request.headers.get("client-request-id") or str(uuid.uuid4())
        with self.state.lock:
            try:
                response = self._handle(request)
            except GraphError as error:
                response = GraphResponse(
                    error.status,
                    graph_error_body(
                        error.code,
                        error.message,
                        now=self.state.now(),
                        request_id=request_id,
                        client_request_id=client_request_id,
                    ),
                    dict(error.headers),
                )
        headers = {
            "request-id": request_id,
            "client-request-id": client_request_id,
            "x-ms-ags-diagnostic": json.dumps(
                {"ServerInfo": {"DataCenter": "UK South", "Slice": "E", "Ring": "3"}}
            ),
            "Strict-Transport-Security": "max-age=31536000",
            **response.headers,
        }
        if response.body is not None:
            headers["Content-Type"] = JSON_CONTENT_TYPE
        response.headers = headers
        return response

    def _handle(self, request: GraphRequest) -> GraphResponse:
        fault = self.state.fault_plan.take_injection(request.method, request.full_path)
        if fault is not None:
            raise fault_error(fault)
        if request.raw_path.strip("/").lower() == "$batch" and not request.in_batch:
            # Imported here because batch.py calls back into this module's GraphService.
            from remote_guard.fakegraph.batch import execute_batch

            # The envelope carries the token its items run with: a bad one fails it whole.
            self._authenticate(request)
            return execute_batch(self, request)
        grant = self._authenticate(request)
        fault = self.state.fault_plan.random_fault()
        if fault is not None:
            raise fault_error(fault)
        throttled = self.state.throttling.check(
            request.method, request.segments, request.params, in_batch=request.in_batch
        )
        if throttled is not None:
            raise throttled
        segments = request.segments
        if segments and segments[0].lower() == "me":
            raise GraphError(
                400, "BadRequest", "/me request is only valid with delegated authentication flow."
            )
        route, params = self._route(request.method, segments)
        _check_permission(grant, route.need)
        if route.need in PROTECTED_NEEDS and not self.state.protected_apis_approved:
            raise GraphError(403, "Forbidden", PROTECTED_API_MESSAGE)
        context = Context(request=request, params=params, grant=grant, state=self.state)
        if route.policy_user is not None:
            user = context.user(route.policy_user)
            if not self.state.policy_covers(user.id):
                raise GraphError(
                    403, "Forbidden", "No Application Access Policy found for this app."
                )
        return route.handler(context)

    def _authenticate(self, request: GraphRequest) -> TokenGrant:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = {
            "WWW-Authenticate": (
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
            )
        }
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token is empty.", headers=challenge
            )
        grant = self.state.token_grant(token.strip())
        now = self.state.now()
        if grant is None or not grant.issued_at - timedelta(minutes=5) <= now < grant.expires_at:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
                headers=challenge,
            )
        return grant

    def _route(self, method: str, segments: list[str]) -> tuple[Route, dict[str, str]]:
        path_matched = False
        for route in self.routes:
            params = route.match(segments)
            if params is None:
                continue
            if route.method == method.upper():
                return route, params
            path_matched = True
        if path_matched:
            raise GraphError(
                405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed."
            )
        raise GraphError(
            400,
            "BadRequest",
            f"Resource not found for the segment '{_unknown_segment(self.routes, segments)}'.",
        )


def fault_error(fault: Fault) -> GraphError:
    """The Graph error for a forced or random fault."""
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = format_retry_after(fault.retry_after)
    codes = {
        # The message of Graph's published 429 body (error-429-throttling.json).
        429: ("TooManyRequests", "Please retry again later."),
        500: ("InternalServerError", "An internal server error occurred."),
        502: ("BadGateway", "Bad gateway."),
        503: ("ServiceUnavailable", "The service is temporarily unavailable."),
        504: ("GatewayTimeout", "The gateway timed out."),
        401: ("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
        403: ("Forbidden", "Forbidden."),
        404: ("ResourceNotFound", "Resource not found."),
        410: ("SyncStateNotFound", "The sync state could not be found."),
    }
    code, message = codes.get(fault.status, ("UnknownError", "An error occurred."))
    return GraphError(fault.status, code, message, headers=headers)


def _unknown_segment(routes: list[Route], segments: list[str]) -> str:
    for depth in range(1, len(segments) + 1):
        prefix = segments[:depth]
        if not any(
            len(route.pattern) >= depth
            and all(
                part.startswith("{") or part.lower() == seg.lower()
                for part, seg in zip(route.pattern[:depth], prefix, strict=True)
            )
            for route in routes
        ):
            return segments[depth - 1]
    return segments[-1] if segments else ""


def _check_permission(grant: TokenGrant, need: Need) -> None:
    if grant.roles & set(need.permissions):
        return
    if need.workload == "directory":
        raise GraphError(
            403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
    if need.workload == "calendar":
        raise GraphError(
            403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
        )
    roles = ", ".join(sorted(grant.roles))
    raise GraphError(
        403,
        "Forbidden",
        f"Missing role permissions on the request. API requires one of "
        f"'{', '.join(need.permissions)}'. Roles on the request '{roles}'.",
    )


def _reject_params(request: GraphRequest, names: tuple[str, ...], resource: str) -> None:
    given = [name for name in names if name in request.params]
    if given:
        raise GraphError(
            400,
            "BadRequest",
            f"The query option(s) '{', '.join(given)}' are not supported on '{resource}'.",
        )


# --- directory -----------------------------------------------------------------------------------


def list_users(ctx: Context) -> GraphResponse:
    request, state = ctx.request, ctx.state
    selected = parse_select(request, _render.USER_PROPERTIES, "microsoft.graph.user")
    users = sorted(state.users.values(), key=lambda u: u.id)
    raw_filter = request.params.get("$filter")
    if raw_filter is not None:
        match = re.fullmatch(r"\s*userType\s+eq\s+'(Guest|Member)'\s*", raw_filter, re.I)
        if match is None:
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                "Unsupported or invalid query filter clause specified for property of resource 'User'.",
            )
        wanted = "guest" if match.group(1).lower() == "guest" else "member"
        users = [u for u in users if u.kind == wanted]
    items = [
        project(_render.user_json(u, state), selected, _render.USER_DEFAULT_PROPERTIES)
        for u in users
    ]
    context = f"users({','.join(selected)})" if selected else "users"
    return paged(request, state, items, context=context, max_top=MAX_TOP_DIRECTORY)


def get_user(ctx: Context) -> GraphResponse:
    user = ctx.user()
    selected = parse_select(ctx.request, _render.USER_PROPERTIES, "microsoft.graph.user")
    body = {
        "@odata.context": odata_context(ctx.request, "users/$entity"),
        **project(_render.user_json(user, ctx.state), selected, _render.USER_DEFAULT_PROPERTIES),
    }
    return GraphResponse(200, body)


def _group(ctx: Context) -> Any:
    group = ctx.state.groups.get(ctx.params["group"])
    if group is None:
        raise GraphError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{ctx.params['group']}' does not exist or one of its queried "
            "reference-property objects are not present.",
        )
    return group


def list_groups(ctx: Context) -> GraphResponse:
    """``GET /groups``, with the simple ``$filter`` equality Graph supports without advanced
    queries: ``mail eq '...'`` or ``displayName eq '...'`` (compared case-insensitively, as
    Entra compares them)."""
    request, state = ctx.request, ctx.state
    selected = parse_select(request, _render.GROUP_PROPERTIES, "microsoft.graph.group")
    groups = sorted(state.groups.values(), key=lambda g: g.id)
    raw_filter = request.params.get("$filter")
    if raw_filter is not None:
        match = re.fullmatch(r"\s*(mail|displayName)\s+eq\s+'((?:[^']|'')*)'\s*", raw_filter, re.I)
        if match is None:
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                "Unsupported or invalid query filter clause specified for property of resource 'Group'.",
            )
        wanted = odata_string(match.group(2)).lower()
        if match.group(1).lower() == "mail":
            groups = [g for g in groups if g.mail.lower() == wanted]
        else:
            groups = [g for g in groups if g.display_name.lower() == wanted]
    items = [
        project(_render.group_json(g, state), selected, _render.GROUP_PROPERTIES) for g in groups
    ]
    context = f"groups({','.join(selected)})" if selected else "groups"
    return paged(request, state, items, context=context, max_top=MAX_TOP_DIRECTORY)


def get_group(ctx: Context) -> GraphResponse:
    group = _group(ctx)
    selected = parse_select(ctx.request, _render.GROUP_PROPERTIES, "microsoft.graph.group")
    body = {
        "@odata.context": odata_context(ctx.request, "groups/$entity"),
        **project(_render.group_json(group, ctx.state), selected, _render.GROUP_PROPERTIES),
    }
    return GraphResponse(200, body)


def _members(ctx: Context, *, transitive: bool, cast: str | None) -> GraphResponse:
    request, state = ctx.request, ctx.state
    group = _group(ctx)
    allowed = frozenset(_render.USER_PROPERTIES) | frozenset(_render.GROUP_PROPERTIES)
    selected = parse_select(request, allowed, "microsoft.graph.directoryObject")

    def render() -> list[dict[str, Any]]:
        members = state.transitive_members(group.id) if transitive else list(group.members)
        items: list[dict[str, Any]] = []
        for kind, member_id in members:
            if cast is not None and cast != kind:
                continue
            if kind == "user":
                user = state.users[member_id]
                data = project(
                    _render.user_json(user, state), selected, _render.USER_DEFAULT_PROPERTIES
                )
            else:
                data = project(
                    _render.group_json(state.groups[member_id], state),
                    selected,
                    _render.GROUP_PROPERTIES,
                )
            items.append({"@odata.type": f"#microsoft.graph.{kind}", **data})
        return items

    context = "directoryObjects" if cast is None else f"Collection(microsoft.graph.{cast})"
    return paged(request, state, render, context=context, max_top=MAX_TOP_DIRECTORY)


def group_owners(ctx: Context) -> GraphResponse:
    """``GET /groups/{id}/owners``: a team's owners (the fake's other groups have none)."""
    request, state = ctx.request, ctx.state
    group = _group(ctx)
    selected = parse_select(
        request, frozenset(_render.USER_PROPERTIES), "microsoft.graph.directoryObject"
    )
    team = state.teams.get(group.id)
    owner_ids = team.owner_ids if team is not None else ()
    items = [
        {
            "@odata.type": "#microsoft.graph.user",
            **project(
                _render.user_json(state.users[owner_id], state),
                selected,
                _render.USER_DEFAULT_PROPERTIES,
            ),
        }
        for owner_id in owner_ids
        if owner_id in state.users
    ]
    return paged(request, state, items, context="directoryObjects", max_top=MAX_TOP_DIRECTORY)


def _cast(ctx: Context) -> str:
    cast = ctx.params["cast"].lower()
    if cast not in ("microsoft.graph.user", "microsoft.graph.group"):
        raise GraphError(
            400, "BadRequest", f"Resource not found for the segment '{ctx.params['cast']}'."
        )
    return cast.rsplit(".", 1)[1]


def group_members(ctx: Context) -> GraphResponse:
    return _members(ctx, transitive=False, cast=None)


def group_transitive_members(ctx: Context) -> GraphResponse:
    return _members(ctx, transitive=True, cast=None)


def group_members_cast(ctx: Context) -> GraphResponse:
    return _members(ctx, transitive=False, cast=_cast(ctx))


def group_transitive_members_cast(ctx: Context) -> GraphResponse:
    return _members(ctx, transitive=True, cast=_cast(ctx))


# --- calendar ------------------------------------------------------------------------------------


def _mailbox_user(ctx: Context) -> Identity:
    user = ctx.state.user(ctx.params["user"])
    if user is None:
        raise GraphError(
            404, "ErrorInvalidUser", f"The requested user '{ctx.params['user']}' is invalid."
        )
    return user


def _window(request: GraphRequest) -> tuple[datetime, datetime]:
    start = request.params.get("startdatetime")
    end = request.params.get("enddatetime")
    if not start or not end:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters "
            "StartDateTime and EndDateTime.",
        )
    try:
        return (
            parse_datetime(start, name="StartDateTime"),
            parse_datetime(end, name="EndDateTime"),
        )
    except GraphError as error:
        raise GraphError(400, "ErrorInvalidParameter", error.message) from None


def _basic_only(grant: TokenGrant) -> bool:
    return not grant.roles & {"Calendars.Read", "Calendars.ReadWrite"}


def _event_out(ctx: Context, event: StoredEvent, selected: list[str] | None) -> dict[str, Any]:
    data = _render.event_json(
        event, zone=ctx.request.outlook_timezone, basic=_basic_only(ctx.grant)
    )
    if selected is None:
        return data
    return {
        name: value
        for name, value in data.items()
        if name in ("@odata.etag", "id") or name in selected
    }


def _zone_headers(request: GraphRequest) -> dict[str, str]:
    zone = request.outlook_timezone
    return {"Preference-Applied": f'outlook.timezone="{zone}"'} if zone else {}


def calendar_view(ctx: Context) -> GraphResponse:
    request, state = ctx.request, ctx.state
    user = _mailbox_user(ctx)
    start, end = _window(request)
    selected = parse_select(request, _render.EVENT_PROPERTIES, "microsoft.graph.event")
    if "$filter" in request.params:
        # Outlook evaluates some filters here; the fake does not, and says so rather than
        # ignoring the filter and returning more than the client asked for.
        raise GraphError(
            400,
            "ErrorInvalidUrlQueryFilter",
            "The fake tenant does not evaluate $filter on calendarView.",
        )
    events = state.events_in_window(user.id, start, end)
    order = request.params.get("$orderby")
    if order is not None:
        match = re.fullmatch(r"\s*start/dateTime(\s+(asc|desc))?\s*", order, re.I)
        if match is None:
            raise GraphError(
                400, "ErrorInvalidProperty", f"The property in $orderby '{order}' is not supported."
            )
        if (match.group(2) or "").lower() == "desc":
            events.reverse()
    size = page_size(request, state, MAX_TOP_CALENDAR)
    skip_text = request.params.get("$skip", "0")
    if not skip_text.isdigit():
        raise GraphError(400, "BadRequest", f"Invalid value '{skip_text}' for $skip query option.")
    skip = int(skip_text)
    window = events[skip : skip + size]
    body: dict[str, Any] = {
        "@odata.context": odata_context(request, f"users('{ctx.params['user']}')/calendarView"),
        "value": [_event_out(ctx, event, selected) for event in window],
    }
    # Outlook offers a next page whenever this one is full, so the last page may be empty.
    if len(window) == size:
        keep = [
            (name, value)
            for name, value in _raw_params(request)
            if name.lower() not in ("$skip", "$top")
        ]
        keep += [("$top", str(size)), ("$skip", str(skip + size))]
        body["@odata.nextLink"] = f"{request.base_url}/v1.0{request.raw_path}?{_encode_query(keep)}"
    headers = _zone_headers(request)
    if request.max_page_size is not None and "$top" not in request.params:
        headers["Preference-Applied"] = ", ".join(
            filter(None, [headers.get("Preference-Applied"), f"odata.maxpagesize={size}"])
        )
    return GraphResponse(200, body, headers)


def _raw_params(request: GraphRequest) -> list[tuple[str, str]]:
    return parse_qsl(request.query_string, keep_blank_values=True)


def _encode_query(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{name}={quote(value, safe=':,()/')}" for name, value in params)


def calendar_view_delta(ctx: Context) -> GraphResponse:
    request, state = ctx.request, ctx.state
    user = _mailbox_user(ctx)
    _reject_delta_params(request)
    skip_token = request.params.get("$skiptoken")
    delta_token = request.params.get("$deltatoken")
    size = request.max_page_size or state.faults.page_size
    if skip_token is not None:
        cursor = state.delta_cursor(skip_token)
        if cursor is None or cursor.final.user_id != user.id:
            raise _sync_state_not_found()
    elif delta_token is not None:
        previous = state.delta_state(delta_token)
        if previous is None or previous.user_id != user.id:
            raise _sync_state_not_found()
        current = state.events_in_window(user.id, *previous.window)
        seen = {event.id: event.change_key for event in current}
        pending: list[StoredEvent | str] = [
            event for event in current if previous.seen.get(event.id) != event.change_key
        ]
        pending += [event_id for event_id in previous.seen if event_id not in seen]
        cursor = DeltaCursor(
            pending=pending,
            page_size=size,
            final=DeltaState(user.id, previous.window, seen),
        )
    else:
        window = _window(request)
        current = state.events_in_window(user.id, *window)
        cursor = DeltaCursor(
            pending=list(current),
            page_size=size,
            final=DeltaState(user.id, window, {e.id: e.change_key for e in current}),
        )
    page, rest = cursor.pending[: cursor.page_size], cursor.pending[cursor.page_size :]
    values = []
    for item in page:
        if isinstance(item, StoredEvent):
            values.append({"@odata.type": "#microsoft.graph.event", **_event_out(ctx, item, None)})
        else:
            values.append(
                {
                    "@odata.type": "#microsoft.graph.event",
                    "id": item,
                    "@removed": {"reason": "deleted"},
                }
            )
    body: dict[str, Any] = {
        "@odata.context": odata_context(request, "Collection(event)"),
        "value": values,
    }
    base = f"{request.base_url}/v1.0{request.raw_path}"
    if rest:
        token = state.store_delta_cursor(
            DeltaCursor(pending=rest, page_size=cursor.page_size, final=cursor.final)
        )
        body["@odata.nextLink"] = f"{base}?$skiptoken={token}"
    else:
        body["@odata.deltaLink"] = f"{base}?$deltatoken={state.store_delta_state(cursor.final)}"
    headers = _zone_headers(request)
    if request.max_page_size is not None:
        headers["Preference-Applied"] = ", ".join(
            filter(
                None,
                [headers.get("Preference-Applied"), f"odata.maxpagesize={cursor.page_size}"],
            )
        )
    return GraphResponse(200, body, headers)


def _reject_delta_params(request: GraphRequest) -> None:
    given = [name for name in DELTA_UNSUPPORTED if name in request.params]
    if given:
        raise GraphError(
            400,
            "ErrorInvalidUrlQuery",
            "The following parameters are not supported with change tracking over the "
            f"'CalendarView' resource: '{', '.join(given)}'.",
        )


def _sync_state_not_found() -> GraphError:
    # The status Graph uses for a delta token it no longer accepts is not stated in Microsoft's
    # docs (facts.md 2, "U"); 410 Gone is what directory and OneDrive delta document.
    return GraphError(
        410,
        "SyncStateNotFound",
        "The sync state generated by the delta token is not found. Please restart the sync "
        "without a delta token.",
    )


def get_event(ctx: Context) -> GraphResponse:
    user = _mailbox_user(ctx)
    event = ctx.state.mailbox(user.id).get(ctx.params["event"])
    if event is None:
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    selected = parse_select(ctx.request, _render.EVENT_PROPERTIES, "microsoft.graph.event")
    body = {
        "@odata.context": odata_context(
            ctx.request, f"users('{ctx.params['user']}')/events/$entity"
        ),
        **_event_out(ctx, event, selected),
    }
    return GraphResponse(200, body, _zone_headers(ctx.request))


def create_event(ctx: Context) -> GraphResponse:
    request, state = ctx.request, ctx.state
    user = _mailbox_user(ctx)
    payload = request.json_body()
    if not isinstance(payload, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object (an event).")
    start, zone = _date_time_zone(payload.get("start"), "Start")
    end, _ = _date_time_zone(payload.get("end"), "End")
    if end < start:
        raise GraphError(
            400,
            "ErrorInvalidRequest",
            "Your request can't be completed. The end time is before the start time.",
        )
    event, _created = state.create_event(user=user, body=payload, start=start, end=end, zone=zone)
    body = {
        "@odata.context": odata_context(request, f"users('{ctx.params['user']}')/events/$entity"),
        **_render.event_json(event, zone=zone, basic=False),
    }
    location = f"{request.base_url}/v1.0/users('{user.id}')/events('{event.id}')"
    return GraphResponse(201, body, {"Location": location})


def send_mail(ctx: Context) -> GraphResponse:
    """``POST /users/{id}/sendMail``: 202 with no body, as Graph answers; the message is kept
    in the tenant state (``TenantState.sent_mail``) for tests to read."""
    request, state = ctx.request, ctx.state
    sender = _mailbox_user(ctx)
    payload = request.json_body()
    message = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(message, dict):
        raise GraphError(
            400,
            "ErrorInvalidRequest",
            "Your request can't be completed. The message property is required.",
        )
    recipients: list[str] = []
    for field_name in ("toRecipients", "ccRecipients", "bccRecipients"):
        for recipient in message.get(field_name) or []:
            email = recipient.get("emailAddress") if isinstance(recipient, dict) else None
            address = str((email or {}).get("address") or "").strip()
            if not address or "@" not in address:
                raise GraphError(
                    400,
                    "ErrorInvalidRecipients",
                    "At least one recipient isn't valid., Recipient '"
                    + address
                    + "' is not resolved. All recipients must be resolved before a message "
                    "can be submitted.",
                )
            recipients.append(address)
    if not recipients:
        raise GraphError(
            400,
            "ErrorInvalidRecipients",
            "At least one recipient isn't valid., A message can't be sent because it contains "
            "no recipients.",
        )
    body = message.get("body") if isinstance(message.get("body"), dict) else {}
    assert isinstance(body, dict)  # noqa: S101 - narrowed above for mypy
    content_type = str(body.get("contentType") or "text").lower()
    if content_type not in ("text", "html"):
        raise GraphError(
            400,
            "ErrorInvalidRequest",
            f"Your request can't be completed. The body content type '{content_type}' is "
            "not valid.",
        )
    save = payload.get("saveToSentItems", True) if isinstance(payload, dict) else True
    state.send_mail(
        sender=sender,
        subject=str(message.get("subject") or ""),
        content_type=content_type,
        content=str(body.get("content") or ""),
        to=tuple(recipients),
        save_to_sent_items=save is not False,
    )
    return GraphResponse(202, None, {})


def _date_time_zone(value: Any, which: str) -> tuple[datetime, str]:
    if not isinstance(value, dict) or not value.get("dateTime"):
        raise GraphError(
            400,
            "ErrorInvalidRequest",
            f"Your request can't be completed. The {which} property of the event is required.",
        )
    zone_name = str(value.get("timeZone") or "UTC")
    zone = _render.known_zone(zone_name)
    if zone is None:
        raise GraphError(
            400,
            "TimeZoneNotSupportedException",
            f"A valid TimeZone value must be specified. The following TimeZone value is not supported: '{zone_name}'.",
        )
    moment = parse_datetime(str(value["dateTime"]), name=f"{which}.DateTime")
    text = str(value["dateTime"])
    if not re.search(r"(Z|[+-]\d{2}:\d{2})$", text):
        moment = moment.replace(tzinfo=None).replace(tzinfo=zone).astimezone(UTC)
    return moment, zone_name


# --- online meetings -----------------------------------------------------------------------------


def list_online_meetings(ctx: Context) -> GraphResponse:
    request, state = ctx.request, ctx.state
    user = ctx.user()
    raw_filter = request.params.get("$filter")
    if raw_filter is None:
        raise GraphError(
            400,
            "BadRequest",
            "Filter expression expected - /onlineMeetings?$filter={ParameterName} eq '{id}'.",
        )
    match = re.fullmatch(
        r"\s*(joinWebUrl|joinMeetingIdSettings/joinMeetingId)\s+eq\s+'(.*)'\s*",
        raw_filter,
        re.IGNORECASE | re.DOTALL,
    )
    if match is None:
        raise GraphError(400, "BadRequest", f"Invalid filter clause: {raw_filter}")
    value = odata_string(match.group(2))
    found: list[Meeting] = []
    seen: set[str | None] = set()
    by_join_url = match.group(1).lower() == "joinweburl"
    # The join URL must match exactly, so only meetings with that URL need looking at.
    candidates = state.meetings_by_join_url(value) if by_join_url else state.all_meetings()
    for meeting in candidates:
        if not meeting.hosted_here or meeting.online_meeting_id in seen:
            continue
        # The occurrences of a series are one onlineMeeting, found by whoever is in any of them.
        occurrences = state.occurrences(meeting)
        if not any(m.involves(user.id) for m in occurrences):
            continue
        if (match.group(1).lower() == "joinweburl" and meeting.join_url == value) or (
            match.group(1).lower() != "joinweburl" and meeting.join_meeting_id == value
        ):
            seen.add(meeting.online_meeting_id)
            found.append(occurrences[0])
    body = {
        "@odata.context": odata_context(request, f"users('{ctx.params['user']}')/onlineMeetings"),
        "value": [
            _render.online_meeting_json(
                m, state, include_unknown=request.include_unknown_enum_members
            )
            for m in found
        ],
    }
    return GraphResponse(200, body)


def _organizer_meeting(ctx: Context) -> Meeting:
    user = ctx.user()
    meeting = ctx.state.meeting_by_online_id(ctx.params["meeting"])
    if meeting is None or meeting.organizer.id != user.id:
        raise GraphError(404, "ResourceNotFound", "The specified meeting could not be found.")
    return meeting


def get_online_meeting(ctx: Context) -> GraphResponse:
    meeting = _organizer_meeting(ctx)
    body = {
        "@odata.context": odata_context(
            ctx.request, f"users('{ctx.params['user']}')/onlineMeetings/$entity"
        ),
        **_render.online_meeting_json(
            meeting, ctx.state, include_unknown=ctx.request.include_unknown_enum_members
        ),
    }
    return GraphResponse(200, body)


def _no_channel_meetings(meeting: Meeting, what: str) -> None:
    if meeting.is_channel_meeting:
        # Microsoft documents that these APIs do not support channel meetings but not the error
        # they return; a 400 keeps "unsupported" apart from "nothing there yet" (an empty list).
        raise GraphError(400, "BadRequest", f"{what} is not supported for channel meetings.")


def _reports(ctx: Context, meeting: Meeting) -> list[CallSession]:
    """One report per ended session: of every occurrence, for a recurring meeting (one
    onlineMeeting), each report carrying that session's start and end."""
    delay = timedelta(seconds=ctx.state.faults.attendance_report_delay_seconds)
    return sorted(
        (
            session
            for occurrence in ctx.state.occurrences(meeting)
            for session in occurrence.sessions
            if session.has_attendance_report and ctx.now >= session.end + delay
        ),
        key=lambda s: (s.start, s.id),
    )


def _report(ctx: Context) -> tuple[Meeting, CallSession]:
    meeting = _organizer_meeting(ctx)
    _no_channel_meetings(meeting, "Attendance report")
    for session in _reports(ctx, meeting):
        if session.report_id == ctx.params["report"]:
            return ctx.state.meetings.get(session.meeting_key or "", meeting), session
    raise GraphError(404, "ResourceNotFound", "The specified attendance report could not be found.")


def _records(ctx: Context, meeting: Meeting, session: CallSession) -> list[dict[str, Any]]:
    records = []
    for presence in session.presences:
        clipped = presence.clipped(ctx.now)
        if clipped is not None:
            records.append(_render.attendance_record_json(clipped, meeting))
    return records


def list_attendance_reports(ctx: Context) -> GraphResponse:
    meeting = _organizer_meeting(ctx)
    _no_channel_meetings(meeting, "Attendance report")
    items = [_render.attendance_report_json(s) for s in _reports(ctx, meeting)]
    context = (
        f"users('{ctx.params['user']}')/onlineMeetings('{ctx.params['meeting']}')/attendanceReports"
    )
    return paged(ctx.request, ctx.state, items, context=context, max_top=MAX_TOP_DIRECTORY)


def get_attendance_report(ctx: Context) -> GraphResponse:
    meeting, session = _report(ctx)
    expand = (ctx.request.params.get("$expand") or "").strip()
    if expand and expand.lower() != "attendancerecords":
        raise GraphError(
            400,
            "BadRequest",
            f"Parsing OData Select and Expand failed: Could not find a property named '{expand}'.",
        )
    body: dict[str, Any] = {
        "@odata.context": odata_context(ctx.request, "meetingAttendanceReport/$entity"),
        **_render.attendance_report_json(session),
    }
    if expand:
        body["attendanceRecords"] = _records(ctx, meeting, session)
    else:
        del body["attendanceRecords"]
    return GraphResponse(200, body)


def list_attendance_records(ctx: Context) -> GraphResponse:
    meeting, session = _report(ctx)
    return paged(
        ctx.request,
        ctx.state,
        _records(ctx, meeting, session),
        context="attendanceRecords",
        max_top=MAX_TOP_DIRECTORY,
    )


def _recordings(ctx: Context, kind: Literal["recording", "transcript"]) -> GraphResponse:
    _reject_params(
        ctx.request,
        tuple(name for name in ctx.request.params if name.startswith("$")),
        "recordings" if kind == "recording" else "transcripts",
    )
    meeting = _organizer_meeting(ctx)
    _no_channel_meetings(meeting, kind.capitalize())
    items = [
        _render.recording_json(
            r, meeting, base_url=ctx.request.base_url, user_segment=ctx.params["user"]
        )
        for occurrence in ctx.state.occurrences(meeting)
        for r in occurrence.recordings
        if r.kind == kind and r.created <= ctx.now
    ]
    if "recording" in ctx.params:
        for item in items:
            if item["id"] == ctx.params["recording"]:
                return GraphResponse(
                    200, {"@odata.context": odata_context(ctx.request, f"{kind}s/$entity"), **item}
                )
        raise GraphError(404, "ResourceNotFound", f"The specified {kind} could not be found.")
    name = "recordings" if kind == "recording" else "transcripts"
    body = {
        "@odata.context": odata_context(
            ctx.request,
            f"users('{ctx.params['user']}')/onlineMeetings('{ctx.params['meeting']}')/{name}",
        ),
        "value": items,
    }
    return GraphResponse(200, body)


def list_recordings(ctx: Context) -> GraphResponse:
    return _recordings(ctx, "recording")


def list_transcripts(ctx: Context) -> GraphResponse:
    return _recordings(ctx, "transcript")


# --- call records --------------------------------------------------------------------------------


def _call_record_visible(ctx: Context, session: CallSession) -> bool:
    delay = timedelta(seconds=ctx.state.faults.call_record_delay_seconds)
    now = ctx.now
    return (
        session.has_call_record
        and now >= session.end + delay
        and now - session.end < CALL_RECORD_RETENTION
    )


def _visible_call_records(ctx: Context) -> list[CallSession]:
    return sorted(
        (session for session in ctx.state.all_sessions() if _call_record_visible(ctx, session)),
        key=lambda s: (s.start, s.id),
    )


def list_call_records(ctx: Context) -> GraphResponse:
    request = ctx.request
    sessions = _visible_call_records(ctx)
    raw_filter = request.params.get("$filter")
    if raw_filter:
        for term in split_and(raw_filter):
            sessions = _apply_call_record_filter(term, sessions)
    return paged(
        request,
        ctx.state,
        lambda: [_render.call_record_json(s) for s in sessions],
        context="communications/callRecords",
        max_top=MAX_PAGE_CALL_RECORDS,
    )


def _apply_call_record_filter(term: str, sessions: list[CallSession]) -> list[CallSession]:
    match = re.fullmatch(r"startDateTime\s+(ge|gt|le|lt)\s+(\S+)", term, re.IGNORECASE)
    if match is not None:
        bound = parse_datetime(match.group(2), name="startDateTime")
        operator = match.group(1).lower()
        tests: dict[str, Callable[[datetime], bool]] = {
            "ge": lambda moment: moment >= bound,
            "gt": lambda moment: moment > bound,
            "le": lambda moment: moment <= bound,
            "lt": lambda moment: moment < bound,
        }
        return [s for s in sessions if tests[operator](s.start)]
    match = re.fullmatch(
        r"participants_v2/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+'([^']*)'\s*\)", term, re.IGNORECASE
    )
    if match is not None:
        wanted = match.group(2)
        return [s for s in sessions if any(p.who.id == wanted for p in s.presences)]
    raise GraphError(400, "BadRequest", f"Invalid filter clause: '{term}' is not supported.")


def _call_record(ctx: Context) -> CallSession:
    session = ctx.state.call_session(ctx.params["record"])
    if session is not None and _call_record_visible(ctx, session):
        return session
    raise GraphError(
        404, "ResourceNotFound", f"Call record '{ctx.params['record']}' was not found."
    )


def get_call_record(ctx: Context) -> GraphResponse:
    session = _call_record(ctx)
    body: dict[str, Any] = {
        "@odata.context": odata_context(ctx.request, "communications/callRecords/$entity"),
        **_render.call_record_json(session),
    }
    expand = ctx.request.params.get("$expand")
    if expand:
        for item in _split_expand(expand):
            normalized = re.sub(r"\s+", "", item).lower()
            if normalized == "participants_v2":
                body["participants_v2"] = [
                    _render.participant_json(p.who) for p in session.presences
                ]
            elif normalized in ("sessions", "sessions($expand=segments)"):
                body["sessions"] = _render.sessions_json(
                    session, segments=normalized.endswith("segments)")
                )
            else:
                raise GraphError(400, "BadRequest", f"Expand of '{item}' is not supported.")
    return GraphResponse(200, body)


def _split_expand(expand: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in expand:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
            continue
        current += char
    if current.strip():
        items.append(current.strip())
    return items


def list_call_record_participants(ctx: Context) -> GraphResponse:
    session = _call_record(ctx)
    items = [_render.participant_json(p.who) for p in session.presences]
    return paged(
        ctx.request,
        ctx.state,
        items,
        context=f"communications/callRecords('{session.id}')/participants_v2",
        max_top=MAX_PAGE_PARTICIPANTS,
    )


# --- chats ---------------------------------------------------------------------------------------


def _chat(ctx: Context) -> Any:
    chat = ctx.state.chats.get(ctx.params["chat"])
    if chat is None or chat.created > ctx.now:
        # Channel threads are not chats: Graph serves channel posts under /teams/.../channels.
        raise GraphError(404, "ResourceNotFound", f"Chat '{ctx.params['chat']}' was not found.")
    return chat


def _messages_response(
    ctx: Context,
    messages: list[Any],
    *,
    context: str,
    team_id: str | None = None,
    channel_id: str | None = None,
) -> GraphResponse:
    request = ctx.request
    order = (request.params.get("$orderby") or "lastModifiedDateTime desc").strip()
    order_key = re.fullmatch(r"(lastModifiedDateTime|createdDateTime)\s+desc", order, re.I)
    if order_key is None:
        raise GraphError(
            400,
            "BadRequest",
            f"$orderby '{order}' is not supported; use lastModifiedDateTime desc or createdDateTime desc.",
        )
    by_created = order_key.group(1).lower() == "createddatetime"
    visible = sorted(
        (m for m in messages if m.created <= ctx.now), key=lambda m: (m.created, m.id), reverse=True
    )
    raw_filter = request.params.get("$filter")
    if raw_filter:
        for term in split_and(raw_filter):
            match = re.fullmatch(
                r"(lastModifiedDateTime|createdDateTime)\s+(gt|lt)\s+(\S+)", term, re.I
            )
            if (
                match is None
                or (
                    match.group(1).lower() == "createddatetime"
                    and (not by_created or match.group(2).lower() != "lt")
                )
                or (match.group(1).lower() == "lastmodifieddatetime" and by_created)
            ):
                raise GraphError(
                    400,
                    "BadRequest",
                    f"Filter '{term}' is not supported with $orderby '{order}'.",
                )
            bound = parse_datetime(match.group(3), name=match.group(1))
            if match.group(2).lower() == "gt":
                visible = [m for m in visible if m.created > bound]
            else:
                visible = [m for m in visible if m.created < bound]
    items = [
        _render.chat_message_json(
            m,
            include_unknown=request.include_unknown_enum_members,
            team_id=team_id,
            channel_id=channel_id,
            tenant_id=ctx.state.tenant_id,
        )
        for m in visible
    ]
    return paged(request, ctx.state, items, context=context, max_top=MAX_TOP_CHAT_MESSAGES)


def list_chat_messages(ctx: Context) -> GraphResponse:
    chat = _chat(ctx)
    return _messages_response(ctx, list(chat.messages), context=f"chats('{chat.id}')/messages")


def get_chat_message(ctx: Context) -> GraphResponse:
    chat = _chat(ctx)
    for message in chat.messages:
        if message.id == ctx.params["message"] and message.created <= ctx.now:
            body = {
                "@odata.context": odata_context(
                    ctx.request, f"chats('{chat.id}')/messages/$entity"
                ),
                **_render.chat_message_json(
                    message,
                    include_unknown=ctx.request.include_unknown_enum_members,
                    tenant_id=ctx.state.tenant_id,
                ),
            }
            return GraphResponse(200, body)
    raise GraphError(404, "ResourceNotFound", "The message was not found.")


def list_chat_members(ctx: Context) -> GraphResponse:
    """Every member of a chat in one answer (the call takes no OData query options)."""
    chat = _chat(ctx)
    body = {
        "@odata.context": odata_context(ctx.request, f"chats('{chat.id}')/members"),
        "@odata.count": len(chat.members),
        "value": [_render.conversation_member_json(chat, member) for member in chat.members],
    }
    return GraphResponse(200, body)


def get_chat(ctx: Context) -> GraphResponse:
    chat = _chat(ctx)
    expand = (ctx.request.params.get("$expand") or "").strip().lower()
    body = {
        "@odata.context": odata_context(ctx.request, "chats/$entity"),
        **_render.chat_json(chat, ctx.state, expand_members=expand == "members"),
    }
    return GraphResponse(200, body)


def list_user_chats(ctx: Context) -> GraphResponse:
    request, state = ctx.request, ctx.state
    user = ctx.user()
    expand = (request.params.get("$expand") or "").strip()
    if expand and expand.lower() != "members":
        raise GraphError(400, "BadRequest", f"Expand of '{expand}' is not supported.")
    chats = [chat for chat in state.chats_of(user.id) if chat.created <= ctx.now]
    raw_filter = request.params.get("$filter")
    if raw_filter:
        match = re.fullmatch(r"\s*chatType\s+eq\s+'(oneOnOne|group|meeting)'\s*", raw_filter, re.I)
        if match is None:
            raise GraphError(400, "BadRequest", f"Invalid filter clause: {raw_filter}")
        chats = [c for c in chats if c.chat_type.lower() == match.group(1).lower()]
    chats.sort(key=lambda c: (c.created, c.id))
    items = [
        _render.chat_json(
            c, state, expand_members=bool(expand), member_cap=MAX_EXPANDED_CHAT_MEMBERS
        )
        for c in chats
    ]
    return paged(
        request, state, items, context=f"users('{ctx.params['user']}')/chats", max_top=MAX_TOP_CHATS
    )


# --- teams and channels --------------------------------------------------------------------------


def _team(ctx: Context) -> Any:
    team = ctx.state.find_team(ctx.params["team"])
    if team is None:
        raise GraphError(
            404, "ResourceNotFound", f"No team found with Group Id {ctx.params['team']}"
        )
    return team


def _channel(ctx: Context) -> Any:
    team = _team(ctx)
    for channel in team.channels:
        if channel.id == ctx.params["channel"]:
            return channel
    raise GraphError(404, "ResourceNotFound", "Channel not found.")


def list_teams(ctx: Context) -> GraphResponse:
    state = ctx.state
    items = [
        {
            key: value
            for key, value in _render.team_json(team, state).items()
            if key
            in (
                "id",
                "createdDateTime",
                "displayName",
                "description",
                "visibility",
                "isArchived",
                "tenantId",
                "webUrl",
            )
        }
        for team in sorted(state.teams.values(), key=lambda t: t.id)
    ]
    return paged(ctx.request, state, items, context="teams", max_top=MAX_TOP_DIRECTORY)


def get_team(ctx: Context) -> GraphResponse:
    team = _team(ctx)
    body = {
        "@odata.context": odata_context(ctx.request, "teams/$entity"),
        **_render.team_json(team, ctx.state),
    }
    return GraphResponse(200, body)


def list_channels(ctx: Context) -> GraphResponse:
    team = _team(ctx)
    channels = list(team.channels)
    raw_filter = ctx.request.params.get("$filter")
    if raw_filter:
        match = re.fullmatch(r"\s*membershipType\s+eq\s+'(\w+)'\s*", raw_filter, re.I)
        if match is None:
            raise GraphError(400, "BadRequest", f"Invalid filter clause: {raw_filter}")
        channels = [c for c in channels if match.group(1).lower() == "standard"]
    body = {
        "@odata.context": odata_context(ctx.request, f"teams('{team.id}')/channels"),
        "@odata.count": len(channels),
        "value": [_render.channel_json(c, ctx.state) for c in channels],
    }
    return GraphResponse(200, body)


def get_channel(ctx: Context) -> GraphResponse:
    channel = _channel(ctx)
    body = {
        "@odata.context": odata_context(
            ctx.request, f"teams('{channel.team_id}')/channels/$entity"
        ),
        **_render.channel_json(channel, ctx.state),
    }
    return GraphResponse(200, body)


def _channel_meetings(ctx: Context) -> list[Meeting]:
    channel = _channel(ctx)
    return [m for m in ctx.state.meetings_in_channel(channel.id) if m.hosted_here]


def list_channel_messages(ctx: Context) -> GraphResponse:
    roots = [
        message
        for meeting in _channel_meetings(ctx)
        for message in meeting.messages
        if message.reply_to_id is None
    ]
    return _messages_response(
        ctx,
        roots,
        context=f"teams('{ctx.params['team']}')/channels('{ctx.params['channel']}')/messages",
        team_id=ctx.params["team"],
        channel_id=ctx.params["channel"],
    )


def _channel_thread(ctx: Context) -> list[ChatMessage]:
    """The messages of one channel post: every occurrence's, for a recurring channel meeting."""
    for meeting in _channel_meetings(ctx):
        if meeting.message_id == ctx.params["message"] and meeting.created <= ctx.now:
            return [m for occurrence in ctx.state.occurrences(meeting) for m in occurrence.messages]
    raise GraphError(404, "ResourceNotFound", "The message was not found.")


def get_channel_message(ctx: Context) -> GraphResponse:
    messages = _channel_thread(ctx)
    root = next(m for m in messages if m.reply_to_id is None)
    body = {
        "@odata.context": odata_context(ctx.request, "chatMessage/$entity"),
        **_render.chat_message_json(
            root,
            include_unknown=ctx.request.include_unknown_enum_members,
            team_id=ctx.params["team"],
            channel_id=ctx.params["channel"],
            tenant_id=ctx.state.tenant_id,
        ),
    }
    return GraphResponse(200, body)


def list_channel_replies(ctx: Context) -> GraphResponse:
    replies = [m for m in _channel_thread(ctx) if m.reply_to_id is not None]
    return _messages_response(
        ctx,
        replies,
        context=(
            f"teams('{ctx.params['team']}')/channels('{ctx.params['channel']}')"
            f"/messages('{ctx.params['message']}')/replies"
        ),
        team_id=ctx.params["team"],
        channel_id=ctx.params["channel"],
    )


# --- the route table -----------------------------------------------------------------------------


def _routes() -> list[Route]:
    def r(
        method: str, path: str, handler: Handler, need: Need, policy_user: str | None = None
    ) -> Route:
        return Route(method, tuple(path.strip("/").split("/")), handler, need, policy_user)

    meeting = "users/{user}/onlineMeetings/{meeting}"
    return [
        r("GET", "users", list_users, USER_READ),
        r("GET", "users/{user}", get_user, USER_READ),
        r("GET", "groups", list_groups, GROUP_MEMBER_READ),
        r("GET", "groups/{group}", get_group, GROUP_MEMBER_READ),
        r("GET", "groups/{group}/members", group_members, GROUP_MEMBER_READ),
        r("GET", "groups/{group}/members/{cast}", group_members_cast, GROUP_MEMBER_READ),
        r("GET", "groups/{group}/transitiveMembers", group_transitive_members, GROUP_MEMBER_READ),
        r("GET", "groups/{group}/owners", group_owners, GROUP_MEMBER_READ),
        r(
            "GET",
            "groups/{group}/transitiveMembers/{cast}",
            group_transitive_members_cast,
            GROUP_MEMBER_READ,
        ),
        r("GET", "users/{user}/calendarView", calendar_view, CALENDAR_READ),
        r("GET", "users/{user}/calendarView/delta", calendar_view_delta, CALENDAR_READ),
        r("GET", "users/{user}/events/{event}", get_event, CALENDAR_READ),
        r("POST", "users/{user}/events", create_event, CALENDAR_WRITE),
        r("POST", "users/{user}/sendMail", send_mail, MAIL_SEND),
        r("GET", "users/{user}/onlineMeetings", list_online_meetings, MEETINGS_READ, "user"),
        r("GET", meeting, get_online_meeting, MEETINGS_READ, "user"),
        r("GET", f"{meeting}/attendanceReports", list_attendance_reports, ARTIFACT_READ, "user"),
        r(
            "GET",
            f"{meeting}/attendanceReports/{{report}}",
            get_attendance_report,
            ARTIFACT_READ,
            "user",
        ),
        r(
            "GET",
            f"{meeting}/attendanceReports/{{report}}/attendanceRecords",
            list_attendance_records,
            ARTIFACT_READ,
            "user",
        ),
        r("GET", f"{meeting}/recordings", list_recordings, RECORDING_READ, "user"),
        r("GET", f"{meeting}/recordings/{{recording}}", list_recordings, RECORDING_READ, "user"),
        r("GET", f"{meeting}/transcripts", list_transcripts, TRANSCRIPT_READ, "user"),
        r(
            "GET",
            f"{meeting}/transcripts/{{recording}}",
            list_transcripts,
            TRANSCRIPT_READ,
            "user",
        ),
        r("GET", "communications/callRecords", list_call_records, CALL_RECORDS_READ),
        r("GET", "communications/callRecords/{record}", get_call_record, CALL_RECORDS_READ),
        r(
            "GET",
            "communications/callRecords/{record}/participants_v2",
            list_call_record_participants,
            CALL_RECORDS_READ,
        ),
        r("GET", "chats/{chat}", get_chat, CHATS_READ),
        r("GET", "chats/{chat}/members", list_chat_members, CHAT_MEMBERS_READ),
        r("GET", "chats/{chat}/messages", list_chat_messages, CHAT_MESSAGES_READ),
        r("GET", "chats/{chat}/messages/{message}", get_chat_message, CHAT_MESSAGES_READ),
        r("GET", "users/{user}/chats", list_user_chats, CHATS_READ),
        r("GET", "teams", list_teams, TEAM_READ),
        r("GET", "teams/{team}", get_team, TEAM_READ),
        r("GET", "teams/{team}/channels", list_channels, CHANNEL_READ),
        r("GET", "teams/{team}/channels/{channel}", get_channel, CHANNEL_READ),
        r(
            "GET",
            "teams/{team}/channels/{channel}/messages",
            list_channel_messages,
            CHANNEL_MESSAGES_READ,
        ),
        r(
            "GET",
            "teams/{team}/channels/{channel}/messages/{message}",
            get_channel_message,
            CHANNEL_MESSAGES_READ,
        ),
        r(
            "GET",
            "teams/{team}/channels/{channel}/messages/{message}/replies",
            list_channel_replies,
            CHANNEL_MESSAGES_READ,
        ),
        # Change notifications (v1.0, and beta for meeting call events); imported here because
        # that module builds on this one.
        *_subscription_routes(),
    ]


def _subscription_routes() -> list[Route]:
    from remote_guard.fakegraph.notifications import subscription_routes

    return subscription_routes()


# --- HTTP ----------------------------------------------------------------------------------------


def encode_json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def graph_router(service: GraphService) -> APIRouter:
    """The FastAPI routes under ``/v1.0`` that hand every request to ``service``."""
    from remote_guard.fakegraph.notifications import beta_router

    router = APIRouter()
    # Graph beta: only the subscriptions (meeting call events are documented there alone).
    router.include_router(beta_router(service))

    @router.api_route("/v1.0/{rest:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def graph(request: Request) -> Response:
        latency = service.state.faults.latency_ms
        if latency > 0:
            await asyncio.sleep(latency / 1000)
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        prefix = re.match(r"/v1\.0", path, re.IGNORECASE)
        sub_path = path[prefix.end() :] if prefix else path
        graph_request = GraphRequest(
            method=request.method,
            raw_path=sub_path or "/",
            query_string=request.scope.get("query_string", b"").decode("latin-1"),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.body(),
            base_url=f"{request.url.scheme}://{request.url.netloc}",
        )
        response = service.handle(graph_request)
        content = encode_json(response.body) if response.body is not None else b""
        return Response(content=content, status_code=response.status, headers=response.headers)

    return router
