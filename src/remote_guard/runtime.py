"""Assembles the running service from settings: database, Graph client, profile, rules."""

from __future__ import annotations

from remote_guard import audit
from remote_guard.cases import hooks as cases_hooks
from remote_guard.clock import Clock, utc_now
from remote_guard.graph.client import GraphClient
from remote_guard.policy.profile import load_policy
from remote_guard.poll.service import FindingListener, Poller
from remote_guard.rules.registry import load_rules
from remote_guard.settings import Settings
from remote_guard.store.db import make_engine, migrate, session_factory


def build_poller(
    settings: Settings, *, clock: Clock = utc_now, on_finding: FindingListener | None = None
) -> Poller:
    """Everything one tenant's poll needs, built once.

    Raises:
        ProfileError: the configured profile is missing or refers to unknown rules or parameters.
        sqlalchemy.exc.OperationalError: the database cannot be reached or migrated.
    """
    registry = load_rules()
    policy = load_policy(
        settings.policy.profile, settings.policy.packs, settings.policy.profile_dirs, registry
    )
    engine = make_engine(settings.database.url)
    migrate(engine)
    audit.configure(engine, settings.audit)
    audit.record_startup(engine, settings=settings, policy=policy)
    poller = Poller(
        settings=settings,
        graph=GraphClient(settings.tenant),
        db=session_factory(engine),
        policy=policy,
        registry=registry,
        clock=clock,
        on_finding=on_finding,
    )
    # Cases for the DSL's review queue, and the DSL e-mail, after every cycle.
    cases_hooks.attach(poller)
    return poller
