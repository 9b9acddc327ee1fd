"""How long the server takes to answer the DSL review queue with the demo data.

Serves the demo federation (as ``make demo`` does), polls it once, starts the web app, signs in
as the demo DSL the real way (through the fake tenant's sign-in page) and times 20 requests of
``/dsl`` over the loopback interface. Run it with::

    .venv/bin/python -m tests.web.measure_dsl_queue [--requests 20] [--path /dsl]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import requests

from remote_guard.fakegraph.demo import demo_scenario
from remote_guard.fakegraph.harness import (
    import_registers,
    scenario_clock,
    settings_for,
    start_web_app,
)
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.logs import configure_logging
from remote_guard.poll.service import run_poll
from remote_guard.runtime import build_poller
from remote_guard.settings import LoggingSettings


def signed_in_session(base_url: str, server: FakeTenantServer, person_key: str) -> requests.Session:
    """A requests session signed in to the web app as ``person_key``.

    Raises:
        RuntimeError: a step of the sign-in did not answer as expected.
    """
    browser = requests.Session()
    start = browser.get(f"{base_url}/sign-in", allow_redirects=False, timeout=10)
    if start.status_code != 303:
        raise RuntimeError(f"/sign-in answered {start.status_code}")
    auth_uri = start.headers["location"]
    params = dict(parse_qsl(urlsplit(auth_uri).query, keep_blank_values=True))
    params["user"] = person_key
    picked = requests.post(
        auth_uri.split("?", 1)[0],
        data=params,
        verify=str(server.ca_path),
        allow_redirects=False,
        timeout=10,
    )
    if picked.status_code != 302:
        raise RuntimeError(f"the fake sign-in page answered {picked.status_code}")
    back = browser.get(picked.headers["location"], allow_redirects=False, timeout=10)
    if back.status_code != 303:
        raise RuntimeError(f"the sign-in return address answered {back.status_code}")
    return browser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--path", default="/dsl")
    args = parser.parse_args(argv)
    configure_logging(LoggingSettings(level="warning"), stream=sys.stderr)
    scenario = demo_scenario()
    clock = scenario_clock(scenario)
    dsl_key = next(person.key for person in scenario.people if "dsl" in person.roles)
    with tempfile.TemporaryDirectory(prefix="rg-measure-") as folder:
        tmp = Path(folder)
        with FakeTenantServer(scenario, state_dir=tmp / "tenant", clock=clock) as server:
            settings = settings_for(
                server, scenario, database_url=f"sqlite:///{tmp / 'rg.db'}", clock=clock
            )
            poller = build_poller(settings, clock=clock)
            import_registers(poller, scenario, server, clock=clock)
            run_poll(poller)
            web, web_settings = start_web_app(server, settings, clock=clock)
            try:
                browser = signed_in_session(web_settings.web.base_url, server, dsl_key)
                url = web_settings.web.base_url + args.path
                browser.get(url, timeout=30)  # the first request reads the roster and policy
                timings: list[float] = []
                for _ in range(args.requests):
                    started = time.perf_counter()
                    answer = browser.get(url, timeout=30)
                    timings.append((time.perf_counter() - started) * 1000)
                    if answer.status_code != 200:
                        raise RuntimeError(f"{args.path} answered {answer.status_code}")
            finally:
                web.stop()
    timings.sort()
    print(
        f"{args.path} as the demo DSL, {len(timings)} requests: median "
        f"{statistics.median(timings):.1f} ms, min {timings[0]:.1f} ms, max {timings[-1]:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
