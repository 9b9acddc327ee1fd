"""Re-evaluating stored sessions from the web app, right after someone changes the registers.

A teacher's registration or a withdrawal of consent (and SLT's approval or refusal of a
registration) changes what the one-to-one rules conclude. Rather than wait for the next poll,
the page that made the change calls :func:`reevaluate`, which runs the rules again on the
sessions' stored snapshots with the registers as they are now (``poll.service.
reevaluate_sessions``): no Graph call, only the database.

The rules and the school's policy are loaded once per app, on first use, from the same
settings the poller uses, so both judge alike.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Collection

import structlog
from sqlalchemy.exc import IntegrityError, OperationalError

from remote_guard import audit
from remote_guard.policy.profile import load_policy
from remote_guard.poll.service import Poller, Reevaluation, reevaluate_sessions
from remote_guard.rules.base import Rule
from remote_guard.rules.registry import load_rules
from remote_guard.web.context import WebContext

log = structlog.get_logger(__name__)

# One poller per app (keyed by the context's id; the weak reference tells a reused id apart).
_pollers: dict[int, tuple[weakref.ref[WebContext], Poller]] = {}
_lock = threading.Lock()


def evaluation_poller(web: WebContext) -> Poller:
    """A poller for evaluating stored snapshots: the app's settings, database and clock, the
    rules and the school's policy. It shares the app's Graph client but re-evaluation never
    calls it.

    Raises:
        ProfileError: the configured profile is missing or refers to unknown rules.
    """
    with _lock:
        known = _pollers.get(id(web))
        poller = known[1] if known is not None and known[0]() is web else None
        if poller is None:
            registry = load_rules()
            settings = web.settings
            policy = load_policy(
                settings.policy.profile,
                settings.policy.packs,
                settings.policy.profile_dirs,
                registry,
            )
            poller = Poller(
                settings=settings,
                graph=web.graph,
                db=web.db,
                policy=policy,
                registry=registry,
                clock=web.clock,
            )
            _pollers[id(web)] = (weakref.ref(web), poller)
        return poller


def rule_titles(web: WebContext) -> dict[str, str]:
    """Rule id -> the rule's title, for showing a finding to a person."""
    registry: dict[str, Rule] = dict(evaluation_poller(web).registry)
    return {rule_id: rule.title for rule_id, rule in registry.items()}


def reevaluate(web: WebContext, session_ids: Collection[str]) -> Reevaluation:
    """Re-evaluate ``session_ids`` now; the findings' changes are audited as the service's
    (``system``) with the current request's id. If a poll is recording the same session at this very
    moment (the two writes collide), it is tried once more; the poll's own cycle re-evaluates
    it again in any case.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be written even on the retry.
        AuditError: the audit trail cannot be written.
    """
    if not session_ids:
        return Reevaluation()
    poller = evaluation_poller(web)
    # The findings change because of the user's change, but the service changes them: the
    # audit trail says "system", tied to the user's request by its id.
    _, request_id = audit.current_actor()
    with audit.acting_as(audit.SYSTEM, request_id=request_id):
        try:
            return reevaluate_sessions(poller, session_ids)
        except (IntegrityError, OperationalError) as exc:
            log.warning("web.reevaluate_retried", reason=type(exc).__name__)
            return reevaluate_sessions(poller, session_ids)
