"""The ``remote-guard`` command."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from remote_guard.poll.service import Poller
    from remote_guard.subscriptions.hub import Notifications, ReceiverServer

from remote_guard.policy.profile import ProfileError
from remote_guard.settings import (
    AuditSettings,
    ConfigError,
    RetentionSettings,
    Settings,
    format_validation_error,
    load_settings,
)

DEFAULT_CONFIG = Path("config/remote_guard.toml")


class UsageError(Exception):
    """A command was given arguments it cannot use; ``str()`` says what to change."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remote-guard",
        description=(
            "Checks remote-learning sessions on Microsoft Teams against a school's code of "
            "practice, reading the school's Microsoft 365 tenant through Microsoft Graph."
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the settings file (default: {DEFAULT_CONFIG}; see config/example.toml)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run against a simulated school tenant (HTTPS on loopback) with SQLite"
    )
    demo.add_argument("--state-dir", type=Path, default=Path("var/demo"))
    demo.add_argument("--interval", type=float, default=30.0, help="seconds between polls")
    demo.add_argument("--cycles", type=int, default=None, help="stop after this many polls")
    demo.add_argument(
        "--web-port", type=int, default=8000, help="the web app's port (default 8000; 0: any)"
    )

    commands.add_parser(
        "serve", help="run the web app for the configured tenant ([web] host, port, public_url)"
    )

    poll = commands.add_parser("poll", help="poll the configured tenant")
    poll.add_argument("--once", action="store_true", help="run one cycle and exit")
    poll.add_argument(
        "--worker",
        action="store_true",
        help="share the polling with other workers through the database ([poll] shards, "
        "lease_seconds); with --once, do every part that is due and free, then exit",
    )
    poll.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="serve /healthz, /readyz and /metrics on this port while polling (a poll-only host)",
    )
    poll.add_argument(
        "--health-host",
        default="127.0.0.1",
        help="the address for --health-port (default 127.0.0.1; 0.0.0.0 for a container, with "
        "[ops] metrics_token set)",
    )

    fake = commands.add_parser("fake-tenant", help="serve a simulated tenant from a scenario")
    source = fake.add_mutually_exclusive_group(required=True)
    source.add_argument("--scenario", type=Path)
    source.add_argument("--demo", action="store_true", help="serve the demo school")
    fake.add_argument("--port", type=int, default=8443)
    fake.add_argument("--state-dir", type=Path, default=Path("var/fake-tenant"))

    scenario = commands.add_parser("scenario", help="print a scenario file")
    scenario.add_argument("--demo", action="store_true", required=True, help="the demo school")
    scenario.add_argument("--seed", type=int, default=7)

    check = commands.add_parser(
        "check", help="serve a scenario, run one full poll with the real client, print findings"
    )
    check.add_argument("--scenario", type=Path, required=True)
    check.add_argument("--format", choices=("json", "text"), default="text")
    check.add_argument("--all", action="store_true", help="include pass and not_applicable results")
    check.add_argument("--state-dir", type=Path, default=None)

    commands.add_parser("migrate", help="create or upgrade the database schema")

    doctor = commands.add_parser(
        "doctor",
        help="check the configured tenant (token, permissions, access policy, groups) and this "
        "server (database, terms); print a checklist with the fix for each failure",
    )
    doctor.add_argument("--format", choices=("text", "json"), default="text")
    doctor.add_argument(
        "--user",
        default=None,
        help="the staff member (UPN or object id) to test the Teams access policy and calendar "
        "with (default: the first member of the staff group)",
    )

    report = commands.add_parser(
        "report",
        help="compliance report: every clause of the profile with its counts over a period",
    )
    report.add_argument("--from", dest="period_from", type=_date, required=True, metavar="DATE")
    report.add_argument("--to", dest="period_to", type=_date, required=True, metavar="DATE")
    report.add_argument("--format", choices=("html", "json", "csv"), default="html")
    report.add_argument("--output", type=Path, default=None, help="write here, not to stdout")
    _store_overrides(report)

    _add_exemption_command(commands)
    _add_privacy_commands(commands)
    return parser


def _add_exemption_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """The exemption commands: add, list, revoke."""
    exemption = commands.add_parser("exemption", help="grant, list or revoke exemptions")
    actions = exemption.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="exempt one object from one rule, with a reason")
    add.add_argument("--rule", required=True, help="the rule id, e.g. one_to_one_without_consent")
    add.add_argument("--scope", choices=("pair", "series", "session", "person"), required=True)
    add.add_argument("--pupil", help="the pupil's Entra object id (pair, person)")
    add.add_argument("--staff", help="the staff member's Entra object id (pair, person)")
    add.add_argument("--session", help="the remote_guard session id (session)")
    add.add_argument("--series", help="the meeting series id (series)")
    add.add_argument("--reason", required=True)
    add.add_argument("--granted-by", required=True, help="who decided (name or account)")
    add.add_argument("--expires", type=_date, required=True, metavar="DATE")
    _store_overrides(add)
    listing = actions.add_parser("list", help="list exemptions")
    listing.add_argument("--all", action="store_true", help="include expired and revoked ones")
    _store_overrides(listing)
    revoke = actions.add_parser("revoke", help="end an exemption now (it stays on record)")
    revoke.add_argument("id")
    revoke.add_argument("--by", required=True, help="who revoked it")
    _store_overrides(revoke)


def _add_privacy_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """The audit trail, subject access and retention commands."""
    audit = commands.add_parser("audit", help="check or export the tamper-evident audit trail")
    audit_actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = audit_actions.add_parser(
        "verify", help="recompute the hash chain and compare the file; name the first bad entry"
    )
    _audit_file_option(verify)
    _store_overrides(verify)
    export = audit_actions.add_parser(
        "export", help="the entries of a period as JSON lines, with their hashes, for an inspector"
    )
    export.add_argument("--from", dest="period_from", type=_date, required=True, metavar="DATE")
    export.add_argument("--to", dest="period_to", type=_date, required=True, metavar="DATE")
    export.add_argument("--output", type=Path, default=None, help="write here, not to stdout")
    _audit_file_option(export)
    _store_overrides(export)

    sar = commands.add_parser(
        "sar", help="subject access: everything held about one person, as JSON and HTML"
    )
    sar.add_argument(
        "--person", required=True, help="the pupil's or staff member's Entra object id"
    )
    sar.add_argument("--output", type=Path, default=Path("."), help="the folder to write into")
    _audit_file_option(sar)
    _store_overrides(sar)

    purge = commands.add_parser(
        "purge", help="remove what [retention] no longer allows keeping (audited; run daily)"
    )
    purge.add_argument("--dry-run", action="store_true", help="say what is due; remove nothing")
    _audit_file_option(purge)
    _store_overrides(purge)


def _audit_file_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--audit-file",
        type=Path,
        default=None,
        help="the audit trail's JSON-lines copy (default: [audit] file, or beside a SQLite "
        "database); with --database the key comes from REMOTE_GUARD_AUDIT__HMAC_KEY(_FILE)",
    )


def _store_overrides(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--database",
        default=None,
        help="database URL (default: [database] url of the settings file), "
        "e.g. sqlite:///var/demo/remote_guard.db after `make demo`",
    )
    command.add_argument(
        "--profile", default=None, help="profile name or .toml path (default: [policy] profile)"
    )
    command.add_argument(
        "--pack", action="append", default=None, help="an added clause pack (repeatable)"
    )


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from None


def _settings(path: Path) -> Settings:
    settings = load_settings(path)
    from remote_guard.logs import configure_logging

    configure_logging(settings.logging)
    return settings


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from remote_guard.fakegraph.harness import run_demo

            return run_demo(
                state_dir=args.state_dir,
                interval=args.interval,
                cycles=args.cycles,
                web_port=args.web_port,
            )
        if args.command == "serve":
            return _serve(args.config)
        if args.command == "fake-tenant":
            from remote_guard.fakegraph.harness import serve_fake_tenant

            return serve_fake_tenant(
                scenario_path=args.scenario,
                demo=args.demo,
                port=args.port,
                state_dir=args.state_dir,
            )
        if args.command == "scenario":
            from remote_guard.fakegraph.demo import demo_scenario
            from remote_guard.fakegraph.scenario import dump_scenario

            sys.stdout.write(dump_scenario(demo_scenario(seed=args.seed)))
            return 0
        if args.command == "check":
            from remote_guard.fakegraph.harness import print_check, run_check_file
            from remote_guard.logs import configure_logging
            from remote_guard.settings import LoggingSettings

            # stdout carries the findings; logs go to stderr.
            configure_logging(LoggingSettings(level="warning"), stream=sys.stderr)

            from remote_guard.fakegraph.scenario import ScenarioError

            try:
                result = run_check_file(args.scenario, state_dir=args.state_dir)
            except ScenarioError as exc:
                raise UsageError(str(exc)) from exc
            print_check(result, output_format=args.format, include_all=args.all)
            return 0
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "migrate":
            from remote_guard.store.db import make_engine, migrate

            settings = _settings(args.config)
            migrate(make_engine(settings.database.url))
            print(f"database at {settings.database.url.split('@')[-1]} is up to date")
            return 0
        if args.command == "poll":
            return _poll(
                _settings(args.config),
                once=args.once,
                health=(args.health_host, args.health_port) if args.health_port else None,
                worker=args.worker,
            )
        if args.command == "report":
            return _report(args)
        if args.command in _STORE_COMMANDS:
            from remote_guard import audit

            # Entries written by this command name the operating-system account that ran it.
            with audit.acting_as(audit.Actor(id=_account(), role="operator")):
                return _STORE_COMMANDS[args.command](args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (ProfileError, UsageError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


def _doctor(args: argparse.Namespace) -> int:
    """Print the doctor's checklist; exit 0 when nothing failed, 1 when a check failed."""
    from remote_guard.doctor import run_doctor
    from remote_guard.logs import configure_logging
    from remote_guard.settings import LoggingSettings

    # stdout carries the checklist; library warnings go to stderr.
    configure_logging(LoggingSettings(level="warning"), stream=sys.stderr)
    report = run_doctor(args.config, user=args.user)
    sys.stdout.write(report.render_json() if args.format == "json" else report.render_text())
    return report.exit_code


def _poll(
    settings: Settings,
    *,
    once: bool,
    health: tuple[str, int] | None = None,
    worker: bool = False,
) -> int:
    """Poll once or on schedule (as one of several workers with ``worker``); with ``health``
    (host, port), serve the operations endpoints (/healthz, /readyz, /metrics) from this
    process meanwhile.

    Raises:
        UsageError: the health port cannot be bound; or, without ``worker``, workers are
            polling the tenant already.
    """
    from remote_guard.leases.work import startup_lock
    from remote_guard.poll.scheduler import run_scheduled
    from remote_guard.poll.service import run_poll
    from remote_guard.runtime import build_poller

    # Workers starting together must not migrate the schema at the same moment.
    with startup_lock(settings.database.url):
        poller = build_poller(settings)
    if not worker:
        _refuse_beside_workers(poller)
    server = None
    if health is not None:
        from remote_guard.ops.server import HealthServer

        try:
            server = HealthServer(poller, host=health[0], port=health[1], since=poller.clock())
        except OSError as exc:
            raise UsageError(
                f"--health-port {health[1]}: cannot listen on {health[0]}:{health[1]} "
                f"({exc.strerror})"
            ) from None
        server.start()
    try:
        if worker:
            return _poll_as_worker(poller, once=once)
        if once:
            result = run_poll(poller)
            print(
                json.dumps(
                    {
                        "run_id": result.run_id,
                        "status": result.status,
                        "seconds": round(result.seconds, 2),
                        "counts": dict(result.counts),
                        "errors": result.errors,
                        "graph": result.graph,
                    },
                    indent=2,
                )
            )
            return 0 if result.status != "failed" else 1
        if settings.notifications.enabled:
            hub, receiver = _notifications(poller)
            try:
                run_scheduled(
                    poller,
                    interval_seconds=settings.poll.interval_seconds,
                    wake=hub.waker.due,
                    jobs=hub.jobs(),
                )
            finally:
                if receiver is not None:
                    receiver.stop()
                hub.stop()
            return 0
        run_scheduled(poller, interval_seconds=settings.poll.interval_seconds)
        return 0
    finally:
        if server is not None:
            server.stop()


def _notifications(poller: Poller) -> tuple[Notifications, ReceiverServer | None]:
    """Change notifications beside the scheduled poller: the subscriptions kept as a job, the
    live overlay on the poller, and (``receiver = "poller"``) the receiver on its listener.

    Raises:
        UsageError: the receiver's port cannot be bound, or its certificate not used.
    """
    import ssl

    from remote_guard.subscriptions.hub import Notifications, ReceiverServer

    config = poller.settings.notifications
    hub = Notifications(poller)
    hub.attach()
    hub.start()
    if config.receiver != "poller":
        return hub, None
    try:
        receiver = ReceiverServer(
            config.listen_host,
            config.listen_port,
            certfile=config.tls_cert_file,
            keyfile=config.tls_key_file,
        )
        receiver.start(hub.app())
    except OSError as exc:
        hub.stop()
        raise UsageError(
            f"[notifications] listen_port {config.listen_port}: cannot listen on "
            f"{config.listen_host}:{config.listen_port} ({exc.strerror})"
        ) from None
    except ssl.SSLError as exc:
        hub.stop()
        raise UsageError(
            f"[notifications] tls_cert_file / tls_key_file cannot be used ({exc.reason}): give "
            "the PEM certificate (with its chain) and its private key"
        ) from None
    print(
        f"Change notifications: receiving at {config.notification_url} (listening on "
        f"{receiver.url(config.receiver_path)})"
    )
    sys.stdout.flush()
    return hub, receiver


def _refuse_beside_workers(poller: Poller) -> None:
    """A single poller assumes it is alone: it would take the workers' runs for cut short.

    Raises:
        UsageError: some worker holds a part of this tenant's polling.
    """
    from remote_guard.leases.lease import live_holders
    from remote_guard.leases.work import unit_prefix

    with poller.db() as session:
        holders = live_holders(session, prefix=unit_prefix(poller.settings))
    if holders:
        raise UsageError(
            f"workers are polling tenant {poller.settings.tenant.tenant_id} "
            f"({', '.join(sorted(set(holders.values())))}): run `remote-guard poll --worker` "
            "here too, or stop them first"
        )


def _poll_as_worker(poller: Poller, *, once: bool) -> int:
    """Run the worker loop; with ``once``, print what each part's run did. Exit code 1 if a
    run failed. With change notifications on, the workers keep the subscriptions (one at a
    time) and poll at once when the web app's receiver asks.

    Raises:
        UsageError: notifications are to be received by the poller, which workers cannot do.
    """
    from remote_guard.leases.work import run_worker

    config = poller.settings.notifications
    if config.enabled and config.receiver == "poller":
        raise UsageError(
            '[notifications] receiver = "poller" cannot be used with poll --worker: Graph posts '
            'to one address, which must stay up when a worker stops. Set receiver = "web" and '
            "run `remote-guard serve` to receive; the workers keep the subscriptions and hear "
            "its poll-now requests through the database."
        )
    if config.enabled:
        from remote_guard.subscriptions.hub import Notifications

        hub = Notifications(poller)
        hub.attach()
        report = run_worker(poller, once=once, wake=hub.waker.due, jobs=hub.jobs())
    else:
        report = run_worker(poller, once=once)
    if once:
        print(
            json.dumps(
                {
                    "worker": report.holder,
                    "runs": [
                        {
                            "part": name,
                            "run_id": result.run_id,
                            "status": result.status,
                            "seconds": round(result.seconds, 2),
                            "counts": dict(result.counts),
                            "errors": result.errors,
                        }
                        for name, result in report.results
                    ],
                },
                indent=2,
            )
        )
    return 1 if any(result.status == "failed" for _, result in report.results) else 0


def _serve(path: Path) -> int:
    """Run the web app in the foreground until Ctrl-C.

    Raises:
        ConfigError: the settings are wrong, or ``[web]`` has no session secret.
    """
    settings = _settings(path)
    if settings.web.session_secret is None:
        raise ConfigError(
            f"{path}: the configuration is not valid.\n"
            "  - key web.session_secret_file: is required by `remote-guard serve`; the web app "
            "signs its session cookie with it. Make one with  openssl rand -hex 32  into a file "
            "only the remote_guard account can read.\n"
            '    Example of a good value: session_secret_file = "/run/secrets/'
            'remote_guard_session_secret"'
        )
    from remote_guard import audit
    from remote_guard.graph.client import GraphClient
    from remote_guard.store.db import make_engine, migrate, session_factory
    from remote_guard.web.app import create_app
    from remote_guard.web.server import bind, serve_forever

    engine = make_engine(settings.database.url)
    migrate(engine)
    audit.configure(engine, settings.audit)
    db = session_factory(engine)
    graph = GraphClient(settings.tenant)
    app = create_app(settings, db, graph)
    notifications = settings.notifications
    if notifications.enabled and notifications.receiver == "web":
        from remote_guard.clock import utc_now
        from remote_guard.subscriptions.hub import Notifications, mount, web_poller

        # The web app receives; the poller (remote-guard poll) keeps the subscriptions.
        hub = Notifications(web_poller(settings, db, graph, utc_now))
        mount(app, hub)
        hub.start()
        print(f"Change notifications: receiving at {notifications.notification_url}")
    sock = bind(settings.web.host, settings.web.port)
    print(
        f"remote_guard web app listening on {settings.web.host}:{settings.web.port}, "
        f"for staff at {settings.web.base_url}\n"
        f"Register this sign-in return address in Entra (App registrations > your app > "
        f"Authentication > Web > Redirect URIs): {settings.web.redirect_uri}\nCtrl-C stops."
    )
    sys.stdout.flush()
    serve_forever(app, sock)
    return 0


def _account() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (some containers)
        return "unknown-account"


@dataclass(frozen=True)
class _Store:
    database_url: str
    profile: str
    packs: tuple[str, ...]
    profile_dirs: tuple[Path, ...]
    timezone: str
    audit: AuditSettings
    retention: RetentionSettings


def _store(args: argparse.Namespace) -> _Store:
    """Where the findings are, and which profile to read them with: the settings file, unless
    --database is given (then the shipped profiles, Europe/London, the default retention and
    the audit key from the environment)."""
    audit_file: Path | None = getattr(args, "audit_file", None)
    if args.database is None:
        settings = _settings(args.config)
        audit = settings.audit
        if audit_file is not None:
            audit = audit.model_copy(update={"file": audit_file})
        return _Store(
            database_url=settings.database.url,
            profile=args.profile or settings.policy.profile,
            packs=tuple(args.pack) if args.pack is not None else settings.policy.packs,
            profile_dirs=settings.policy.profile_dirs,
            timezone=settings.school_day.timezone,
            audit=audit,
            retention=settings.retention,
        )
    from remote_guard.logs import configure_logging
    from remote_guard.settings import LoggingSettings

    # Without a settings file, warnings still go to standard error, never into the output.
    configure_logging(LoggingSettings(level="warning"))
    return _Store(
        database_url=args.database,
        profile=args.profile or "bramham-shadwell",
        packs=tuple(args.pack or ()),
        profile_dirs=(Path("config/policies"),),
        timezone="Europe/London",
        audit=_audit_from_environment(audit_file),
        retention=RetentionSettings(),
    )


def _audit_from_environment(audit_file: Path | None) -> AuditSettings:
    """[audit] settings from REMOTE_GUARD_AUDIT__* variables, for --database without a file.

    Raises:
        ConfigError: the key is too short or its file cannot be read.
    """
    import os

    from pydantic import ValidationError

    data: dict[str, object] = {"file": audit_file}
    for key in ("hmac_key", "hmac_key_file", "file"):
        value = os.environ.get(f"REMOTE_GUARD_AUDIT__{key.upper()}")
        if value and data.get(key) is None:
            data[key] = value
    try:
        return AuditSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error("REMOTE_GUARD_AUDIT__* environment variables", exc)
        ) from None


def _open_engine(store: _Store) -> Engine:
    from sqlalchemy.exc import SQLAlchemyError

    from remote_guard import audit
    from remote_guard.store.db import make_engine, migrate

    try:
        engine = make_engine(store.database_url)
        migrate(engine)
    except SQLAlchemyError as exc:
        raise UsageError(
            f"cannot open the database {store.database_url.split('@')[-1]}: "
            f"{type(exc).__name__}. Check --database or [database] url."
        ) from exc
    audit.configure(engine, store.audit)
    return engine


def _open_store(store: _Store) -> sessionmaker[Session]:
    from remote_guard.store.db import session_factory

    return session_factory(_open_engine(store))


def _report(args: argparse.Namespace) -> int:
    from remote_guard.clock import utc_now
    from remote_guard.policy.profile import load_policy
    from remote_guard.report.compliance import build_report, render
    from remote_guard.rules.registry import load_rules

    store = _store(args)
    if args.period_to < args.period_from:
        raise UsageError(f"--to {args.period_to} is before --from {args.period_from}")
    registry = load_rules()
    policy = load_policy(store.profile, store.packs, store.profile_dirs, registry)
    db = _open_store(store)
    with db() as session:
        report = build_report(
            session,
            policy=policy,
            registry=registry,
            period_from=args.period_from,
            period_to=args.period_to,
            timezone=store.timezone,
            now=utc_now(),
        )
    text = render(report, args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(f"report written to {args.output}", file=sys.stderr)
    _audit_export(
        db,
        "report.exported",
        object_type="report",
        object_id=f"{args.period_from}/{args.period_to}",
        detail={"format": args.format, "output": str(args.output or "stdout")},
    )
    return 0


def _audit_export(
    db: sessionmaker[Session],
    action: str,
    *,
    object_type: str,
    object_id: str,
    detail: dict[str, object],
) -> None:
    """Record an export or a view in the audit trail, in its own transaction."""
    from remote_guard import audit
    from remote_guard.store.db import transaction

    with transaction(db) as session:
        audit.record(session, action, object_type=object_type, object_id=object_id, detail=detail)


def _exemption(args: argparse.Namespace) -> int:
    import uuid
    from datetime import UTC, datetime, time
    from zoneinfo import ZoneInfo

    from pydantic import ValidationError

    from remote_guard.exemptions.exemption import Exemption, ExemptionScope
    from remote_guard.exemptions.service import (
        ExemptionNotFoundError,
        load_exemptions,
        revoke_exemption,
        save_exemption,
    )
    from remote_guard.rules.registry import load_rules
    from remote_guard.store.db import transaction

    store = _store(args)
    db = _open_store(store)
    now = datetime.now(UTC)
    if args.action == "add":
        if args.rule not in load_rules():
            raise UsageError(
                f"--rule {args.rule!r} is not a rule; known rules: {', '.join(sorted(load_rules()))}"
            )
        expires = datetime.combine(
            args.expires + timedelta(days=1), time(0), tzinfo=ZoneInfo(store.timezone)
        )
        try:
            exemption = Exemption(
                id=str(uuid.uuid4()),
                rule_id=args.rule,
                scope=ExemptionScope(args.scope),
                pupil_id=args.pupil,
                staff_id=args.staff,
                series_id=args.series,
                session_id=args.session,
                reason=args.reason,
                granted_by=args.granted_by,
                granted_at=now,
                expires_at=expires.astimezone(UTC),
            )
        except ValidationError as exc:
            problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            raise UsageError(f"the exemption cannot be granted: {problems}") from exc
        with transaction(db) as session:
            save_exemption(session, exemption)
        print(f"exemption {exemption.id} granted until {args.expires} (end of that day)")
        return 0
    if args.action == "revoke":
        with transaction(db) as session:
            try:
                revoked = revoke_exemption(session, args.id, by=args.by, now=now)
            except ExemptionNotFoundError:
                raise UsageError(f"no exemption has id {args.id!r}") from None
        print(f"exemption {revoked.id} revoked; findings it covered reopen at the next poll")
        return 0
    with db() as session:
        exemptions = load_exemptions(session)
    shown = [e for e in exemptions if args.all or e.active(now)]
    _audit_export(
        db,
        "exemption.listed",
        object_type="exemption",
        object_id="*",
        detail={"all": args.all, "shown": [e.id for e in shown]},
    )
    for item in shown:
        scope = ", ".join(
            f"{name}={value}"
            for name, value in (
                ("pupil", item.pupil_id),
                ("staff", item.staff_id),
                ("series", item.series_id),
                ("session", item.session_id),
            )
            if value
        )
        state = "active" if item.active(now) else ("revoked" if item.revoked_at else "expired")
        print(
            f"{item.id}  {state:<8} {item.rule_id} [{item.scope.value}: {scope}] "
            f"until {item.expires_at:%Y-%m-%d} by {item.granted_by}: {item.reason}"
        )
    if not shown:
        print("no exemptions" if args.all else "no active exemptions (--all shows the rest)")
    return 0


def _audit(args: argparse.Namespace) -> int:
    store = _store(args)
    engine = _open_engine(store)
    if args.action == "verify":
        return _audit_verify(engine)
    return _audit_export_entries(args, store, engine)


def _audit_verify(engine: Engine) -> int:
    from remote_guard import audit
    from remote_guard.audit.verify import verify

    report = verify(engine)
    first = report.first
    if first is None:
        print(
            f"audit trail verified: {report.entries} entries, head #{report.head_seq} "
            f"{report.head_hash}; {report.keyed} signed with the key, {report.purged} with "
            "content removed by retention"
        )
        print(
            f"file {report.file}: {report.file_lines} lines match the database"
            if report.file is not None
            else "no JSON-lines file is configured ([audit] file)"
        )
        audit.log_head(engine, event_name="audit.verified")
        return 0
    print(f"audit trail FAILED: the first bad entry is {first}")
    others = [p for p in report.problems if p is not first]
    if others:
        print("also:")
        for problem in others:
            print(f"  - {problem}")
    if report.more_problems:
        print("  (and more; fix or explain these first)")
    return 1


def _audit_export_entries(args: argparse.Namespace, store: _Store, engine: Engine) -> int:
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    from remote_guard.audit.export import export_entries
    from remote_guard.store.db import session_factory

    if args.period_to < args.period_from:
        raise UsageError(f"--to {args.period_to} is before --from {args.period_from}")
    zone = ZoneInfo(store.timezone)
    start = datetime.combine(args.period_from, time(0), tzinfo=zone)
    end = datetime.combine(args.period_to + timedelta(days=1), time(0), tzinfo=zone)
    if args.output is None:
        excerpt = export_entries(engine, start=start, end=end, out=sys.stdout)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("w", encoding="utf-8", newline="\n") as out:
            excerpt = export_entries(engine, start=start, end=end, out=out)
        print(f"{excerpt.entries} audit entries written to {args.output}", file=sys.stderr)
    _audit_export(
        session_factory(engine),
        "audit.exported",
        object_type="audit_entries",
        object_id=f"{excerpt.first_seq or 0}-{excerpt.last_seq or 0}",
        detail={
            "from": str(args.period_from),
            "to": str(args.period_to),
            "entries": excerpt.entries,
            "output": str(args.output or "stdout"),
        },
    )
    return 0


def _sar(args: argparse.Namespace) -> int:
    import uuid

    from remote_guard.clock import utc_now
    from remote_guard.privacy.subject_access import SubjectAccessError, write_export

    store = _store(args)
    db = _open_store(store)
    with db() as session:
        try:
            written = write_export(session, args.person, args.output, now=utc_now())
        except SubjectAccessError as exc:
            raise UsageError(str(exc)) from None
    _audit_export(
        db,
        "subject_access.exported",
        object_type="subject_access",
        object_id=str(uuid.uuid4()),
        detail={"person_id": args.person.strip(), "counts": written.counts},
    )
    found = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in written.counts.items())
    print(f"subject access export written to {written.json_path} and {written.html_path}")
    print(f"it holds {found}; read it before sending it (see docs/dpia.md)")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from remote_guard.clock import utc_now
    from remote_guard.privacy.retention import purge

    store = _store(args)
    db = _open_store(store)
    result = purge(db, store.retention, now=utc_now(), dry_run=args.dry_run)
    verb = "due for removal" if result.dry_run else "removed"
    counts = result.counts()
    print(
        f"{verb}: {counts['sessions_without_findings']} sessions without findings, "
        f"{counts['sessions_with_findings']} sessions with findings "
        f"({counts['findings']} findings in all), {counts['consents']} consents "
        f"({counts['registrations_unlinked']} registrations unlinked), and the content of "
        f"{counts['audit_entries']} audit entries"
    )
    if result.audit_seq is not None:
        print(f"the purge is audit entry #{result.audit_seq}")
    return 0


_STORE_COMMANDS = {
    "report": _report,
    "exemption": _exemption,
    "audit": _audit,
    "sar": _sar,
    "purge": _purge,
}
