"""Who is who, for telling a notification's people apart without a poll.

The configured groups are read once and kept for ``[poll] directory_refresh_minutes`` (at least
ten minutes here: a notification must not cost a directory read); anyone else is classified as
the collector does (guest, other tenant, anonymous, phone).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import structlog

from remote_guard.clock import Clock
from remote_guard.collect.snapshot import Person
from remote_guard.directory.service import Directory, load_directory
from remote_guard.graph.client import GraphClient
from remote_guard.graph.models import IdentitySet, PayloadError, parse
from remote_guard.settings import Settings

log = structlog.get_logger(__name__)

MIN_REFRESH = timedelta(minutes=10)


class LiveDirectory:
    """The directory, read at most every refresh interval, shared by the handlers."""

    def __init__(self, graph: GraphClient, settings: Settings, clock: Clock) -> None:
        self._graph = graph
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._directory: Directory | None = None
        self._read_at: datetime | None = None

    def get(self) -> Directory:
        """The directory, read now if never read or stale.

        Raises:
            GraphError: the configured groups could not be read (and none was read before).
        """
        now = self._clock()
        every = max(timedelta(minutes=self._settings.poll.directory_refresh_minutes), MIN_REFRESH)
        with self._lock:
            if (
                self._directory is not None
                and self._read_at is not None
                and now - self._read_at < every
            ):
                return self._directory
            try:
                self._directory = load_directory(self._graph, self._settings)
            except Exception:
                if self._directory is None:
                    raise
                # A stale directory is better than none for a live alert; retried next time.
                log.warning("notifications.directory_refresh_failed")
                return self._directory
            self._read_at = now
            return self._directory

    def classify(self, identity: IdentitySet | None, *, fallback_id: str) -> Person:
        """The person behind an identity set (a chat message's sender, a call participant).

        Raises:
            GraphError: the directory could not be read.
        """
        directory = self.get()
        person = directory.identity(identity, fallback_id=fallback_id)
        return directory.resolve(self._graph, person)

    def identity(self, raw: Any, *, fallback_id: str) -> Person:
        """The person behind a communications identity set, as the collector names people.

        The roster payload writes its keys in PascalCase (``User``, ``DisplayName``); they are
        read in Graph's usual camelCase. A school-tenant user in none of the configured groups
        is looked up once (a guest account, or an unlisted member).

        Raises:
            GraphError: the directory could not be read.
        """
        try:
            identity = parse(IdentitySet, camel_keys(raw), what="participant identity")
        except PayloadError:
            identity = None
        return self.classify(identity, fallback_id=fallback_id)


def camel_keys(value: Any) -> Any:
    """``value`` with every object key's first letter in lower case, recursively."""
    if isinstance(value, dict):
        return {
            (key[:1].lower() + key[1:] if isinstance(key, str) else key): camel_keys(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [camel_keys(item) for item in value]
    return value
