"""Writing the audit trail: one function every part of remote_guard calls, in the caller's transaction.

``record(session, action, object_type=..., object_id=..., before=..., after=...)`` adds an entry
to the session's transaction, so the entry commits or rolls back with the change it describes.
Who acted comes from :func:`acting_as` (the web app binds the signed-in user and the request id;
the command line binds the operating-system account), or is ``system``.

Writers never fork the chain: each takes the lock row (``audit_head``) with an UPDATE before it
reads the head. On PostgreSQL that is a row lock held to commit, as ``SELECT ... FOR UPDATE``
takes; on SQLite it takes the database's write lock, as ``BEGIN IMMEDIATE`` would, so the head
read afterwards cannot be stale. After a commit the new entries are appended to the JSON-lines
file under a file lock, and once a day the head hash is written to the structured log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from weakref import WeakKeyDictionary

import structlog
from pydantic import BaseModel
from sqlalchemy import Connection, Engine, Table, event, inspect, select, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from remote_guard.audit.chain import (
    Header,
    canonical,
    content_digest,
    entry_hash,
    line_for,
    utc_text,
)
from remote_guard.audit.models import HEAD_ROW_ID, AuditEntryRow, AuditHeadRow
from remote_guard.clock import utc_now
from remote_guard.logs import redact_data

if TYPE_CHECKING:
    from remote_guard.findings.models import FindingEventRow
    from remote_guard.policy.profile import Policy
    from remote_guard.settings import AuditSettings, Settings

log = structlog.get_logger(__name__)

_ENTRIES = cast(Table, AuditEntryRow.__table__)
_HEAD = cast(Table, AuditHeadRow.__table__)
_PENDING = "remote_guard.audit.pending"


class AuditError(Exception):
    """The audit trail cannot be written (its head row is missing); the change is refused."""


@dataclass(frozen=True)
class Actor:
    """Who did something: a user id and role, or the service itself."""

    id: str
    role: str


SYSTEM = Actor(id="system", role="system")

_acting: ContextVar[tuple[Actor, str | None] | None] = ContextVar(
    "remote_guard_audit_actor", default=None
)


@contextlib.contextmanager
def acting_as(actor: Actor, *, request_id: str | None = None) -> Iterator[None]:
    """Attribute every entry recorded inside the block to ``actor`` and ``request_id``."""
    token = _acting.set((actor, request_id))
    try:
        yield
    finally:
        _acting.reset(token)


def current_actor() -> tuple[Actor, str | None]:
    return _acting.get() or (SYSTEM, None)


# --- configuration, per engine ----------------------------------------------------------------


@dataclass(frozen=True)
class TrailConfig:
    file: Path | None
    key: bytes | None = field(default=None, repr=False)


_configs: WeakKeyDictionary[Engine, TrailConfig] = WeakKeyDictionary()


def default_file(url: str | URL) -> Path | None:
    """Beside a SQLite database file; none for PostgreSQL or an in-memory database."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    path = Path(database)
    return path.with_name(f"{path.stem}.audit.jsonl")


def configure(engine: Engine, settings: AuditSettings) -> TrailConfig:
    """Use ``settings`` for every entry written through ``engine``; call once at start-up."""
    key = settings.hmac_key.get_secret_value().encode("utf-8") if settings.hmac_key else None
    config = TrailConfig(file=settings.file or default_file(engine.url), key=key)
    _configs[engine] = config
    if config.file is None:
        log.warning(
            "audit.no_file",
            reason="set [audit] file: with PostgreSQL the trail has no JSON-lines copy",
        )
    return config


def config_for(bind: Engine | Connection) -> TrailConfig:
    engine = bind.engine if isinstance(bind, Connection) else bind
    config = _configs.get(engine)
    return config if config is not None else TrailConfig(file=default_file(engine.url))


def _engine_of(session: Session) -> Engine:
    bind = session.get_bind()
    return bind.engine if isinstance(bind, Connection) else bind


# --- recording --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One thing to record; ``before``/``after`` hold only what changed, ``detail`` the rest."""

    action: str
    object_type: str
    object_id: str
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    detail: Mapping[str, Any] | None = None


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON: times as UTC text, enums as values, sets sorted."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(item) for item in value), key=canonical)
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    raise TypeError(f"an audit entry cannot hold a {type(value).__name__}")


def _payload(item: Event) -> str:
    content: dict[str, Any] = {"before": item.before, "after": item.after}
    if item.detail is not None:
        content["detail"] = item.detail
    return canonical(redact_data(_jsonable(content)))


def record(
    session: Session,
    action: str,
    *,
    object_type: str,
    object_id: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
    run_id: str | None = None,
    at: datetime | None = None,
) -> AuditEntryRow:
    """Add one entry to ``session``'s transaction; it commits with the change it records.

    Raises:
        AuditError: the head row is missing (the trail was tampered with or never migrated).
        TypeError: ``before``, ``after`` or ``detail`` hold a value that is not JSON.
    """
    item = Event(action, object_type, object_id, before=before, after=after, detail=detail)
    return record_many(session, [item], actor=actor, run_id=run_id, at=at)[0]


def record_many(
    session: Session,
    items: Sequence[Event],
    *,
    actor: Actor | None = None,
    run_id: str | None = None,
    at: datetime | None = None,
) -> list[AuditEntryRow]:
    """Add several entries at once, taking the lock row once.

    Raises:
        AuditError: the head row is missing.
        TypeError: an event holds a value that is not JSON.
    """
    if not items:
        return []
    payloads = [_payload(item) for item in items]
    config = config_for(_engine_of(session))
    bound_actor, bound_request = current_actor()
    who = actor or bound_actor
    run = run_id or bound_request
    moment = at or utc_now()
    # The UPDATE comes first: it takes the lock, so the head read with it cannot be stale.
    head = session.execute(
        update(_HEAD)
        .where(_HEAD.c.id == HEAD_ROW_ID)
        .values(seq=_HEAD.c.seq + len(items))
        .returning(_HEAD.c.seq, _HEAD.c.hash)
    ).one_or_none()
    if head is None:
        raise AuditError(
            "the audit trail's head row is missing, so no entry can be chained; "
            "run `remote-guard audit verify` and restore the database from a backup"
        )
    last_seq, previous = int(head[0]), str(head[1])
    rows: list[AuditEntryRow] = []
    for offset, (item, payload) in enumerate(zip(items, payloads, strict=True)):
        salt = secrets.token_hex(16)
        header = Header(
            seq=last_seq - len(items) + 1 + offset,
            at=utc_text(moment),
            actor_id=who.id,
            actor_role=who.role,
            action=item.action,
            object_type=item.object_type,
            object_id=item.object_id,
            run_id=run,
            content=content_digest(salt, payload),
            prev=previous,
        )
        digest = entry_hash(header, config.key)
        rows.append(
            AuditEntryRow(
                seq=header.seq,
                at=moment,
                actor_id=header.actor_id,
                actor_role=header.actor_role,
                action=header.action,
                object_type=header.object_type,
                object_id=header.object_id,
                run_id=header.run_id,
                payload=payload,
                salt=salt,
                content_digest=header.content,
                prev_hash=previous,
                hash=digest,
                keyed=config.key is not None,
            )
        )
        previous = digest
    session.execute(update(_HEAD).where(_HEAD.c.id == HEAD_ROW_ID).values(hash=previous))
    session.add_all(rows)
    session.info[_PENDING] = True
    return rows


# What an entry keeps of each kind of register row: enough to show who decided what and when.
# Left out on purpose: a parent's name and e-mail address, evidence references and join links
# (personal data the audit does not need; the register row itself holds them).
AUDITED_FIELDS: dict[str, tuple[str, ...]] = {
    "consent": (
        "pupil_id",
        "scope",
        "relationship",
        "granted_at",
        "method",
        "expires_at",
        "withdrawn_at",
        "recorded_by",
    ),
    "registration": (
        "staff_id",
        "pupil_id",
        "activity",
        "starts_at",
        "ends_at",
        "status",
        "approved_by",
        "approved_at",
        "consent_id",
        "recorded_by",
    ),
    "exemption": (
        "rule_id",
        "scope",
        "pupil_id",
        "staff_id",
        "series_id",
        "session_id",
        "reason",
        "granted_by",
        "granted_at",
        "expires_at",
        "revoked_at",
        "revoked_by",
    ),
}


def record_row_change(
    session: Session,
    row: Any,
    *,
    object_type: str,
    fields: Sequence[str] | None = None,
    action: str | None = None,
) -> AuditEntryRow | None:
    """Record what changed in ``row`` (an ORM object about to be saved), limited to ``fields``
    (default: ``AUDITED_FIELDS[object_type]``).

    A new row records its ``fields`` as ``after`` (action ``<object_type>.created``); a stored
    row records the changed fields' old and new values (``<object_type>.changed``). Nothing is
    recorded when none of ``fields`` changed.

    Raises:
        AuditError: as :func:`record`.
        KeyError: ``fields`` is not given and ``object_type`` has no default.
    """
    fields = fields if fields is not None else AUDITED_FIELDS[object_type]
    state = inspect(row)
    if state.persistent or state.deleted or state.detached:
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for name in fields:
            history = state.attrs[name].history
            if not history.added:
                continue
            old = history.deleted[0] if history.deleted else None
            new = history.added[0]
            if old != new:
                before[name], after[name] = old, new
        if not after:
            return None
        return record(
            session,
            action or f"{object_type}.changed",
            object_type=object_type,
            object_id=str(row.id),
            before=before,
            after=after,
        )
    return record(
        session,
        action or f"{object_type}.created",
        object_type=object_type,
        object_id=str(row.id),
        after={name: getattr(row, name) for name in fields},
    )


def record_finding_events(session: Session, events: Iterable[FindingEventRow]) -> None:
    """One entry per finding status change: rule, clause, session, subject and the statuses.

    The reason text stays in ``finding_events``: it may name people, and the audit entry only
    has to show what changed and when.
    """
    from remote_guard.findings.models import FindingRow

    items: list[Event] = []
    run_ids: set[str | None] = set()
    for change in events:
        finding = session.get(FindingRow, change.finding_key)
        exemption = (finding.exemption or {}).get("id") if finding is not None else None
        items.append(
            Event(
                action="finding.created" if change.from_status is None else "finding.changed",
                object_type="finding",
                object_id=change.finding_key,
                before=None if change.from_status is None else {"status": change.from_status},
                after={"status": change.to_status, "exemption": exemption},
                detail=None
                if finding is None
                else {
                    "rule": finding.rule_id,
                    "clause": finding.clause_id,
                    "session": finding.session_id,
                    "subject": finding.subject_key,
                },
            )
        )
        run_ids.add(change.poll_run_id)
    run_id = next(iter(run_ids)) if len(run_ids) == 1 else None
    record_many(session, items, run_id=run_id)


def record_startup(engine: Engine, *, settings: Settings, policy: Policy) -> AuditEntryRow:
    """Record the hash of the configuration (secrets excluded) and of the profile in force.

    Raises:
        AuditError: as :func:`record`.
    """
    from remote_guard import __version__

    config_hash = hashlib.sha256(
        canonical(settings.model_dump(mode="json")).encode("utf-8")
    ).hexdigest()
    profile_hash = hashlib.sha256(
        canonical(policy.model_dump(mode="json")).encode("utf-8")
    ).hexdigest()
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return record(
            session,
            "service.started",
            object_type="tenant",
            object_id=settings.tenant.tenant_id,
            after={
                "config_sha256": config_hash,
                "profile_sha256": profile_hash,
                "profiles": [profile.id for profile in policy.profiles],
                "version": __version__,
            },
        )


# --- the JSON-lines file ----------------------------------------------------------------------


class FileDamagedError(Exception):
    """The JSON-lines file's last line is cut short or not an entry; nothing is appended to it."""


def row_line(row: Any, header: Header | None = None) -> str:
    """The file line of a stored entry (an ORM row or a result row with the same columns)."""
    return line_for(
        header or row_header(row),
        payload=row.payload,
        salt=row.salt,
        hash_=row.hash,
        keyed=bool(row.keyed),
    )


def row_header(row: Any) -> Header:
    return Header(
        seq=int(row.seq),
        at=utc_text(row.at),
        actor_id=row.actor_id,
        actor_role=row.actor_role,
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        run_id=row.run_id,
        content=row.content_digest,
        prev=row.prev_hash,
    )


_thread_lock = threading.Lock()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive use of ``path`` across threads and processes (a ``.lock`` file beside it)."""
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with _thread_lock, lock_path.open("a+b") as handle:
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def last_seq_in_file(path: Path) -> int:
    """The sequence number on the file's last line; 0 for a missing or empty file.

    Raises:
        FileDamagedError: the last line is cut short (no newline) or is not an entry.
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return 0
    with handle:
        end = handle.seek(0, os.SEEK_END)
        if end == 0:
            return 0
        chunk = b""
        position = end
        while position > 0:
            step = min(65536, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step) + chunk
            if chunk.count(b"\n") >= 2 or position == 0:
                break
    if not chunk.endswith(b"\n"):
        raise FileDamagedError(f"{path}: the last line is cut short (no line end)")
    last = chunk[:-1].rsplit(b"\n", 1)[-1]
    try:
        seq = json.loads(last)["seq"]
    except (ValueError, KeyError, TypeError):
        raise FileDamagedError(f"{path}: the last line is not an audit entry") from None
    if not isinstance(seq, int):
        raise FileDamagedError(f"{path}: the last line has no sequence number")
    return seq


def sync_file(engine: Engine, config: TrailConfig | None = None) -> int:
    """Append to the file every committed entry it does not have yet; return how many.

    Raises:
        FileDamagedError: the file's last line is damaged (``audit verify`` names it).
        OSError: the file cannot be written.
    """
    config = config or config_for(engine)
    if config.file is None:
        return 0
    config.file.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with file_lock(config.file):
        last = last_seq_in_file(config.file)
        with engine.connect() as connection:
            result = connection.execution_options(yield_per=2000).execute(
                select(_ENTRIES).where(_ENTRIES.c.seq > last).order_by(_ENTRIES.c.seq)
            )
            with config.file.open("a", encoding="utf-8", newline="\n") as out:
                for row in result:
                    out.write(row_line(row) + "\n")
                    written += 1
                out.flush()
                os.fsync(out.fileno())
    return written


def rewrite_file(engine: Engine, config: TrailConfig | None = None) -> int:
    """Write the whole file again from the table (after a purge blanked old content).

    Raises:
        OSError: the file cannot be written.
    """
    config = config or config_for(engine)
    if config.file is None:
        return 0
    config.file.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with file_lock(config.file):
        temporary = config.file.with_name(config.file.name + ".tmp")
        with engine.connect() as connection:
            result = connection.execution_options(yield_per=2000).execute(
                select(_ENTRIES).order_by(_ENTRIES.c.seq)
            )
            with temporary.open("w", encoding="utf-8", newline="\n") as out:
                for row in result:
                    out.write(row_line(row) + "\n")
                    written += 1
                out.flush()
                os.fsync(out.fileno())
        temporary.replace(config.file)
    return written


# --- after commit: the file, and the daily anchor in the log ----------------------------------

_anchored: dict[str, date] = {}


def head(engine: Engine) -> tuple[int, str]:
    """The committed head: last sequence number and hash (0 and 64 zeros for an empty trail).

    Raises:
        AuditError: the head row is missing.
    """
    with engine.connect() as connection:
        found = connection.execute(
            select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == HEAD_ROW_ID)
        ).one_or_none()
    if found is None:
        raise AuditError("the audit trail's head row is missing")
    return int(found[0]), str(found[1])


def log_head(engine: Engine, *, event_name: str = "audit.head") -> tuple[int, str]:
    """Write the head to the structured log, so an external log store holds an anchor.

    Raises:
        AuditError: the head row is missing.
    """
    seq, digest = head(engine)
    today = utc_now().date()
    _anchored[engine.url.render_as_string(hide_password=True)] = today
    log.info(event_name, seq=seq, hash=digest, date=today.isoformat())
    return seq, digest


def _after_commit(session: Session) -> None:
    if not session.info.pop(_PENDING, False):
        return
    try:
        engine = _engine_of(session)
        sync_file(engine)
        key = engine.url.render_as_string(hide_password=True)
        if _anchored.get(key) != utc_now().date():
            log_head(engine)
    except (FileDamagedError, OSError, AuditError, SQLAlchemyError) as exc:
        # The entries are committed; the file catches up at the next commit once repaired,
        # and `audit verify` reports the gap meanwhile.
        log.error("audit.file_not_written", reason=str(exc))  # noqa: TRY400 (no traceback needed)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_rollback", _after_rollback)
