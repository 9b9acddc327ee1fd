"""How an audit entry is serialised and hashed. Changing anything here breaks every stored chain.

* canonical JSON: keys sorted, no whitespace, UTF-8, no ASCII escaping;
* content digest = SHA-256 over ``salt + ":" + payload`` (the payload's canonical JSON text);
* entry hash = SHA-256 (or HMAC-SHA256 with the configured key) over the canonical JSON of the
  header: ``v, seq, at, actor_id, actor_role, action, object_type, object_id, run_id, content,
  prev``, where ``at`` is UTC with microseconds (``2026-11-18T16:00:00.000000Z``) and ``prev`` is
  the previous entry's hash (64 zeros for entry 1).

A JSON-lines file line is the canonical JSON of the header plus ``payload`` (the parsed content,
or null once purged), ``salt``, ``hash`` and ``keyed``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

FORMAT_VERSION = 1

_ENCODE = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def canonical(value: Any) -> str:
    """The one JSON text for ``value``.

    Raises:
        ValueError: ``value`` holds NaN or infinity, which JSON cannot carry.
        TypeError: ``value`` holds something that is not JSON (a datetime, a set, an object).
    """
    return _ENCODE(value)


def utc_text(moment: datetime) -> str:
    """``moment`` as the fixed-width UTC text hashed into an entry."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def content_digest(salt: str, payload: str) -> str:
    return hashlib.sha256(f"{salt}:{payload}".encode()).hexdigest()


@dataclass(frozen=True)
class Header:
    """The part of an entry the chain hashes; it is never purged."""

    seq: int
    at: str  # utc_text
    actor_id: str
    actor_role: str
    action: str
    object_type: str
    object_id: str
    run_id: str | None
    content: str  # content digest
    prev: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "seq": self.seq,
            "at": self.at,
            "actor_id": self.actor_id,
            "actor_role": self.actor_role,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "run_id": self.run_id,
            "content": self.content,
            "prev": self.prev,
        }


def entry_hash(header: Header, key: bytes | None) -> str:
    """SHA-256 of the header, or HMAC-SHA256 when ``key`` is given."""
    data = canonical(header.as_dict()).encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def line_for(
    header: Header, *, payload: str | None, salt: str | None, hash_: str, keyed: bool
) -> str:
    """The JSON-lines text of one entry (no trailing newline).

    ``payload`` is already canonical JSON, so it is placed into the line as it is rather than
    parsed and serialised again (verify builds a million of these).
    """
    record = header.as_dict()
    record["salt"] = salt
    record["hash"] = hash_
    record["keyed"] = keyed
    if any("\x00" in value for value in record.values() if isinstance(value, str)):
        record["payload"] = None if payload is None else json.loads(payload)
        return canonical(record)
    record["payload"] = "\x00"
    return canonical(record).replace('"\\u0000"', "null" if payload is None else payload, 1)
