"""The request model and the OData plumbing the Graph handlers share: query, Prefer, paging."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from remote_guard.fakegraph._errors import GraphError
from remote_guard.fakegraph.tenant import PageCursor, TenantState


@dataclass(frozen=True)
class GraphRequest:
    """One Graph request, from the socket or from a ``$batch`` item."""

    method: str
    raw_path: str  # after /v1.0, percent-encoding kept, e.g. /users/x/calendarView
    query_string: str  # raw, without the "?"
    headers: dict[str, str]  # names in lower case
    body: bytes
    base_url: str  # https://127.0.0.1:PORT
    in_batch: bool = False

    @cached_property
    def segments(self) -> list[str]:
        """Path segments, each percent-decoded once (so an id may contain an encoded '/')."""
        return [unquote(part) for part in self.raw_path.strip("/").split("/") if part]

    @cached_property
    def params(self) -> dict[str, str]:
        """Query parameters, names in lower case (Graph matches them case-insensitively)."""
        return {
            name.lower(): value
            for name, value in parse_qsl(self.query_string, keep_blank_values=True)
        }

    @property
    def full_path(self) -> str:
        path = "/v1.0" + self.raw_path
        return f"{path}?{self.query_string}" if self.query_string else path

    @cached_property
    def prefer(self) -> list[str]:
        values = self.headers.get("prefer", "")
        return [part.strip() for part in values.split(",") if part.strip()]

    @property
    def include_unknown_enum_members(self) -> bool:
        return any(p.lower() == "include-unknown-enum-members" for p in self.prefer)

    @property
    def max_page_size(self) -> int | None:
        for preference in self.prefer:
            match = re.fullmatch(r"odata\.maxpagesize\s*=\s*(\d+)", preference, re.IGNORECASE)
            if match:
                return max(1, int(match.group(1)))
        return None

    @property
    def outlook_timezone(self) -> str | None:
        for preference in self.prefer:
            match = re.fullmatch(r'outlook\.timezone\s*=\s*"?([^"]+)"?', preference, re.I)
            if match:
                return match.group(1)
        return None

    def json_body(self) -> Any:
        """The body parsed as JSON.

        Raises:
            GraphError: 400, the body is not JSON.
        """
        try:
            return json.loads(self.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise GraphError(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
            ) from None


@dataclass
class GraphResponse:
    status: int
    body: Any | None = None
    headers: dict[str, str] = field(default_factory=dict)


def odata_context(request: GraphRequest, fragment: str) -> str:
    return f"{request.base_url}/v1.0/$metadata#{fragment}"


def parse_select(
    request: GraphRequest, allowed: frozenset[str] | tuple[str, ...], type_name: str
) -> list[str] | None:
    """The ``$select`` list, or None if absent.

    Raises:
        GraphError: 400, a property is not one the type has.
    """
    raw = request.params.get("$select")
    if raw is None:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    allowed_lower = {name.lower(): name for name in allowed}
    selected = []
    for name in names:
        if name.lower() not in allowed_lower:
            raise GraphError(
                400,
                "BadRequest",
                f"Could not find a property named '{name}' on type '{type_name}'.",
            )
        selected.append(allowed_lower[name.lower()])
    return selected


def page_size(request: GraphRequest, state: TenantState, max_top: int) -> int:
    """Items per page: ``$top``, else ``Prefer: odata.maxpagesize``, else the scenario's size.

    Raises:
        GraphError: 400, ``$top`` is not a positive integer.
    """
    top = request.params.get("$top")
    if top is not None:
        if not top.isdigit() or int(top) < 1:
            raise GraphError(400, "BadRequest", f"Invalid value '{top}' for $top query option.")
        return min(int(top), max_top)
    preferred = request.max_page_size
    if preferred is not None:
        return min(preferred, max_top)
    return min(state.faults.page_size, max_top)


def paged(
    request: GraphRequest,
    state: TenantState,
    items: list[Any] | Callable[[], list[Any]],
    *,
    context: str,
    max_top: int,
) -> GraphResponse:
    """One page of ``items`` with an opaque ``$skiptoken`` nextLink when more remain.

    The collection is frozen at the first page; each nextLink names an immutable cursor, so a
    retried page (after a 429) returns the same items. ``items`` may be a function making the
    list, so later pages of a large collection do not build it again only to ignore it.

    Raises:
        GraphError: 400, the skip token is unknown.
    """
    token = request.params.get("$skiptoken")
    if token is not None:
        cursor = state.cursor(token)
        if cursor is None:
            raise GraphError(400, "BadRequest", "The skip token is not valid.")
    else:
        cursor = PageCursor(
            items=items() if callable(items) else items,
            offset=0,
            page_size=page_size(request, state, max_top),
        )
    end = cursor.offset + cursor.page_size
    body: dict[str, Any] = {
        "@odata.context": odata_context(request, context),
        "value": cursor.items[cursor.offset : end],
    }
    if end < len(cursor.items):
        next_token = state.store_cursor(
            PageCursor(items=cursor.items, offset=end, page_size=cursor.page_size)
        )
        keep = [
            (name, value)
            for name, value in parse_qsl(request.query_string, keep_blank_values=True)
            if name.lower() != "$skiptoken"
        ]
        query = "&".join(f"{name}={quote(value, safe=',()/:')}" for name, value in keep)
        separator = "&" if query else ""
        body["@odata.nextLink"] = (
            f"{request.base_url}/v1.0{request.raw_path}?{query}{separator}$skiptoken={next_token}"
        )
    return GraphResponse(200, body)


def project(
    item: dict[str, Any], selected: list[str] | None, defaults: tuple[str, ...]
) -> dict[str, Any]:
    names = selected if selected is not None else list(defaults)
    return {name: item[name] for name in names if name in item}


def parse_datetime(value: str, *, name: str) -> datetime:
    """An OData/ISO date-time; without an offset it is UTC (as Graph reads it).

    Raises:
        GraphError: 400, not a date-time.
    """
    text = value.strip().strip("'")
    # Graph writes seven fractional digits; Python reads at most six.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise GraphError(
            400,
            "BadRequest",
            f"The value '{value}' of parameter '{name}' is not a valid date-time.",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def split_and(expression: str) -> list[str]:
    """Split a $filter on top-level ``and`` (not inside parentheses or quotes)."""
    parts: list[str] = []
    depth = 0
    in_quote = False
    current = ""
    index = 0
    while index < len(expression):
        char = expression[index]
        if char == "'":
            in_quote = not in_quote
        elif not in_quote and char == "(":
            depth += 1
        elif not in_quote and char == ")":
            depth -= 1
        if not in_quote and depth == 0 and expression[index : index + 5].lower() == " and ":
            parts.append(current.strip())
            current = ""
            index += 5
            continue
        current += char
        index += 1
    parts.append(current.strip())
    return [part for part in parts if part]


def odata_string(literal: str) -> str:
    """The value of an OData string literal body (quotes inside are doubled)."""
    return literal.replace("''", "'")
