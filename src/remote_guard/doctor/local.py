"""Checks of this server's side: the database, the school day and terms, the policy profile,
the web app's settings and the audit key. None of them talks to Microsoft."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from remote_guard.doctor.report import Check, Status
from remote_guard.settings import Settings
from remote_guard.store.db import MIGRATIONS_DIR


def database_checks(settings: Settings) -> list[Check]:
    """The database answers, and its schema is the one this version of remote_guard needs.

    Nothing is created or changed: a SQLite file that does not exist is reported, not made.
    """
    url = make_url(settings.database.url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database not in ("", ":memory:") and not Path(database).is_file():
            return [
                Check(
                    "database",
                    "Database reachable",
                    Status.FAIL,
                    f"the SQLite file {database} does not exist yet",
                    "run remote-guard migrate (as the account remote_guard runs as) to create "
                    "it; check [database] url names the file you mean",
                ),
                Check("database_schema", "Database schema up to date", Status.SKIP, "no database"),
            ]
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
            current = _current_revision(connection)
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None)
        reason = str(original if original is not None else exc)
        reason = reason.splitlines()[0] if reason else type(exc).__name__
        if url.password:
            reason = reason.replace(str(url.password), "***")
        fix = (
            "check the file's folder exists and the account remote_guard runs as can write it"
            if url.get_backend_name() == "sqlite"
            else "check the host and port, that the database exists (createdb), and the "
            "password (PGPASSWORD or ~/.pgpass of the remote_guard account)"
        )
        return [
            Check(
                "database",
                "Database reachable",
                Status.FAIL,
                f"{shown}: {type(exc).__name__}: {reason}",
                fix,
            ),
            Check("database_schema", "Database schema up to date", Status.SKIP, "no database"),
        ]
    finally:
        engine.dispose()
    return [
        Check("database", "Database reachable", Status.PASS, shown),
        _schema_check(current),
    ]


def _current_revision(connection: object) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection)  # type: ignore[arg-type]
    return context.get_current_revision()


def _schema_check(current: str | None) -> Check:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    heads = set(script.get_heads())
    title = "Database schema up to date"
    if current is None:
        return Check(
            "database_schema",
            title,
            Status.FAIL,
            "the database is empty (no remote_guard tables)",
            "run remote-guard migrate",
        )
    if current in heads:
        return Check("database_schema", title, Status.PASS, f"revision {current}")
    known = {revision.revision for revision in script.walk_revisions()}
    if current in known:
        return Check(
            "database_schema",
            title,
            Status.FAIL,
            f"the database is at revision {current}; this remote_guard needs "
            f"{', '.join(sorted(heads))}",
            "stop remote_guard, back the database up (deploy/README.md), then run "
            "remote-guard migrate",
        )
    return Check(
        "database_schema",
        title,
        Status.FAIL,
        f"the database is at revision {current}, which this remote_guard does not know: it was "
        "upgraded by a newer version",
        "run the newer remote_guard, or restore the backup taken before the upgrade",
    )


def school_day_check(settings: Settings, *, today: date) -> Check:
    """Term dates make sense: some are configured, they do not overlap, one is current or next."""
    title = "School day and term dates"
    day = settings.school_day
    hours = f"{day.start:%H:%M}-{day.end:%H:%M} {day.timezone}"
    terms = sorted(day.terms, key=lambda term: term.start)
    if not terms:
        return Check(
            "school_day",
            title,
            Status.WARN,
            f"school day {hours}, but no term dates: every weekday counts as a school day, "
            "holidays included",
            "add a [[school_day.terms]] block (start, end) per term or half term, as in "
            "config/example.toml",
        )
    for earlier, later in itertools.pairwise(terms):
        if later.start <= earlier.end:
            return Check(
                "school_day",
                title,
                Status.WARN,
                f"the term {later.start}..{later.end} overlaps {earlier.start}..{earlier.end}",
                "correct the [[school_day.terms]] dates",
            )
    current = next((term for term in terms if term.start <= today <= term.end), None)
    if current is not None:
        return Check(
            "school_day",
            title,
            Status.PASS,
            f"{hours}; in term ({current.start} to {current.end}); {len(terms)} terms",
        )
    upcoming = [term for term in terms if term.start > today]
    if upcoming:
        return Check(
            "school_day",
            title,
            Status.PASS,
            f"{hours}; a holiday now, the next term starts {upcoming[0].start}",
        )
    return Check(
        "school_day",
        title,
        Status.WARN,
        f"every configured term has ended (the last on {terms[-1].end}): from now on every "
        "weekday counts as a holiday",
        "add the next school year's terms as [[school_day.terms]] blocks",
    )


def policy_check(settings: Settings) -> Check:
    """The configured profile and packs load and bind to known rules."""
    from remote_guard.policy.profile import ProfileError, load_policy
    from remote_guard.rules.registry import load_rules

    title = "Policy profile"
    try:
        policy = load_policy(
            settings.policy.profile,
            settings.policy.packs,
            settings.policy.profile_dirs,
            load_rules(),
        )
    except ProfileError as exc:
        return Check(
            "policy",
            title,
            Status.FAIL,
            str(exc).splitlines()[0],
            "fix [policy] profile, packs or profile_dirs (docs/profiles.md); profile_dirs is "
            "relative to the folder remote_guard starts in",
        )
    names = ", ".join(profile.name for profile in policy.profiles)
    return Check("policy", title, Status.PASS, f"{names}: {len(policy.bound_rules)} rules bound")


def web_check(settings: Settings) -> Check:
    """What ``remote-guard serve`` needs, and the sign-in address to register in Entra."""
    web = settings.web
    title = "Web app settings"
    redirect = web.redirect_uri
    register = (
        "register this Redirect URI at Entra admin centre > App registrations > your "
        f"remote_guard app > Authentication > Web: {redirect}"
    )
    if web.session_secret is None:
        return Check(
            "web",
            title,
            Status.WARN,
            "no [web] session_secret_file: remote-guard serve will refuse to start",
            "openssl rand -hex 32 > /etc/remote-guard/session_secret (readable only by the "
            "remote_guard account) and set session_secret_file to it; then " + register,
        )
    if web.public_url is None:
        return Check(
            "web",
            title,
            Status.WARN,
            f"no [web] public_url: sign-in only works in a browser on this machine ({redirect})",
            "set public_url to the https:// address staff open, then " + register,
        )
    return Check("web", title, Status.PASS, f"sign-in returns to {redirect} (register it in Entra)")


def audit_check(settings: Settings) -> Check:
    """The audit trail is signed with a key and has its JSON-lines copy."""
    title = "Audit trail key and copy"
    backend = make_url(settings.database.url).get_backend_name()
    if settings.audit.hmac_key is None:
        return Check(
            "audit",
            title,
            Status.WARN,
            "no [audit] hmac_key_file: the trail is hash-chained but not signed, so someone "
            "who can change the database could rebuild it",
            "openssl rand -hex 32 > /etc/remote-guard/audit_key, keep a copy in the school's "
            "password safe, and set hmac_key_file to it before the first poll",
        )
    if settings.audit.file is None and backend != "sqlite":
        return Check(
            "audit",
            title,
            Status.WARN,
            "no [audit] file: with PostgreSQL the trail has no JSON-lines copy",
            'set [audit] file = "/var/lib/remote-guard/audit.jsonl" on a disk the database '
            "users cannot write",
        )
    return Check("audit", title, Status.PASS, "signed with the key; JSON-lines copy kept")
