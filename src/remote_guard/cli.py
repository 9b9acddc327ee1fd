"""The ``remote-guard`` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from remote_guard.settings import ConfigError, Settings, load_settings

DEFAULT_CONFIG = Path("config/remote_guard.toml")


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

    poll = commands.add_parser("poll", help="poll the configured tenant")
    poll.add_argument("--once", action="store_true", help="run one cycle and exit")

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
    return parser


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

            return run_demo(state_dir=args.state_dir, interval=args.interval, cycles=args.cycles)
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

            result = run_check_file(args.scenario, state_dir=args.state_dir)
            print_check(result, output_format=args.format, include_all=args.all)
            return 0
        if args.command == "migrate":
            from remote_guard.store.db import make_engine, migrate

            settings = _settings(args.config)
            migrate(make_engine(settings.database.url))
            print(f"database at {settings.database.url.split('@')[-1]} is up to date")
            return 0
        if args.command == "poll":
            return _poll(_settings(args.config), once=args.once)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


def _poll(settings: Settings, *, once: bool) -> int:
    from remote_guard.poll.scheduler import run_scheduled
    from remote_guard.poll.service import run_poll
    from remote_guard.runtime import build_poller

    poller = build_poller(settings)
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
    run_scheduled(poller, interval_seconds=settings.poll.interval_seconds)
    return 0
