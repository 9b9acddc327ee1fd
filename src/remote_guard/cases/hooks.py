"""What the poller does for cases at the end of each cycle, and the DSL e-mail.

``attach(poller)`` is called once where the poller is assembled (``runtime.build_poller``):
after every cycle a case is opened for each session with an open finding, a closed case with a
breach found after it was closed is reopened, and (with ``[notify] enabled``) the DSLs are
mailed about new high-severity findings. Errors are logged and never stop the poller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from remote_guard.cases.notify import DslNotifier
from remote_guard.cases.service import open_cases_for_open_findings, reopen_cases_with_new_breaches
from remote_guard.store.db import transaction

if TYPE_CHECKING:
    from remote_guard.poll.service import Poller, PollResult
    from remote_guard.rules.base import Finding

log = structlog.get_logger(__name__)


def attach(poller: Poller) -> DslNotifier | None:
    """Add the case keeping (and the notifier, when enabled) to ``poller``'s hooks, keeping any
    listener it already has. Returns the notifier, if any."""
    notifier = (
        DslNotifier(
            settings=poller.settings,
            graph=poller.graph,
            db=poller.db,
            registry=poller.registry,
            clock=poller.clock,
        )
        if poller.settings.notify.enabled
        else None
    )
    if notifier is not None:
        poller.on_finding = _both(poller.on_finding, notifier.on_finding)
    previous = poller.after_cycle

    def after_cycle(result: PollResult) -> None:
        if previous is not None:
            try:
                previous(result)
            except Exception:
                log.exception("cases.previous_hook_failed")
        keep_cases(poller)
        if notifier is not None:
            notifier.flush(result)

    poller.after_cycle = after_cycle
    return notifier


def keep_cases(poller: Poller) -> None:
    """Open and reopen cases after a cycle (logged, never raised: the next cycle tries again)."""
    try:
        with transaction(poller.db) as db:
            now = poller.clock()
            opened = open_cases_for_open_findings(db, now=now)
            reopened = reopen_cases_with_new_breaches(db, now=now)
    except Exception:
        log.exception("cases.keep_failed")
        return
    if opened or reopened:
        log.info("cases.kept", opened=len(opened), reopened=len(reopened))


def _both(
    first: Callable[[Finding, str | None], None] | None,
    second: Callable[[Finding, str | None], None],
) -> Callable[[Finding, str | None], None]:
    if first is None:
        return second

    def listener(finding: Finding, previous: str | None) -> None:
        try:
            first(finding, previous)
        finally:
            second(finding, previous)

    return listener
