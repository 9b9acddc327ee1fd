"""Deterministic identifiers and Graph's date-time formats."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

from remote_guard.fakegraph.scenario import derive_id


def digest(*parts: str, size: int = 32) -> bytes:
    """Stable pseudo-random bytes from ``parts`` (so ids are the same on every run)."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(("\x1f".join(parts) + f"#{counter}").encode()).digest()
        counter += 1
    return out[:size]


def guid(tenant_id: str, kind: str, key: str) -> str:
    return derive_id(tenant_id, kind, key)


def digits(*parts: str, count: int) -> str:
    number = int.from_bytes(digest(*parts, size=16), "big")
    return str(number)[-count:].rjust(count, "0")


def outlook_id(*parts: str) -> str:
    """An id shaped like Exchange's (base64url, ``AAMkA`` prefix, ``=`` padding)."""
    body = base64.urlsafe_b64encode(digest(*parts, size=45)).decode()
    return f"AAMkA{body}AAA="


def change_key(*parts: str) -> str:
    return base64.b64encode(digest(*parts, size=18)).decode()


def ical_uid(*parts: str) -> str:
    return "040000008200E00074C5B7101A82E00800000000" + digest(*parts, size=24).hex().upper()


def meeting_thread_id(tenant_id: str, key: str) -> str:
    """``19:meeting_<base64 of a GUID string>@thread.v2`` as Teams writes private meeting threads.

    Base64 of an ASCII GUID never contains ``+``, ``/`` or padding, like the real ones.
    """
    token = base64.b64encode(guid(tenant_id, "meeting-thread", key).encode()).decode()
    return f"19:meeting_{token}@thread.v2"


def online_meeting_id(organizer_id: str, message_id: str, thread_id: str) -> str:
    """Graph's onlineMeeting id: base64 of ``1*{organizer}*{messageId}**{threadId}``."""
    return base64.b64encode(f"1*{organizer_id}*{message_id}**{thread_id}".encode()).decode()


def decode_online_meeting_id(meeting_id: str) -> tuple[str, str, str] | None:
    """(organizer id, message id, thread id) from an onlineMeeting id, or ``None`` if malformed."""
    try:
        text = base64.b64decode(meeting_id.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    parts = text.split("*", 4)
    if len(parts) != 5 or parts[0] != "1" or parts[3] != "":
        return None
    return parts[1], parts[2], parts[4]


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def iso_z(moment: datetime, decimals: int = 0) -> str:
    """``2026-11-21T09:00:00Z`` or with ``decimals`` fractional digits (Graph uses 3 or 7)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if decimals:
        fraction = f"{moment.microsecond:06d}0"[:decimals].ljust(decimals, "0")
        text += "." + fraction
    return text + "Z"


def outlook_datetime(moment: datetime) -> str:
    """Outlook's dateTimeTimeZone.dateTime: no offset, seven decimals."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}0"


def iso_duration(seconds: float) -> str:
    """An ISO 8601 duration such as ``PT1H2M3S`` (Teams writes call durations this way)."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT"
    if hours:
        text += f"{hours}H"
    if minutes:
        text += f"{minutes}M"
    if secs or text == "PT":
        text += f"{secs}S"
    return text
