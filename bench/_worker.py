"""The poller in a process of its own, so its time and peak memory are its own.

``python -m bench._worker SPEC.json`` reads a spec written by :mod:`bench._harness`, builds the
real poller (``build_poller``) from the settings in it, in frugal or naive mode, and runs poll
cycles: a fixed number back to back, or one every ``interval_seconds`` until the stop file
appears. After every cycle it rewrites the results file: per cycle its wall time, status,
Graph requests (``GraphClient.stats``: HTTP requests, ``$batch`` items, 429s received, retries)
and counts; its CPU time; and the process's peak resident memory (``VmHWM`` in
``/proc/self/status``, the kernel's high-water mark of this process's own memory; not
``ru_maxrss``, which on Linux also holds the memory of the parent it was started from).
"""

from __future__ import annotations

import inspect
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from remote_guard.logs import configure_logging
from remote_guard.poll.service import Poller, PollResult, run_poll
from remote_guard.runtime import build_poller
from remote_guard.settings import LoggingSettings, settings_from_mapping


def spec_clock(spec: dict[str, Any]) -> Any:
    """The shared clock: the scenario's "now" at wall time ``epoch``, running at real speed."""
    now = datetime.fromisoformat(spec["clock"]["now"])
    epoch = float(spec["clock"]["epoch"])

    def clock() -> datetime:
        return now + timedelta(seconds=time.time() - epoch)

    return clock


def frugal_switch() -> str | None:
    """Where the poller's frugal/naive switch is, if this version of the poller has one."""
    if "frugal" in inspect.signature(build_poller).parameters:
        return "build_poller"
    if "frugal" in getattr(Poller, "__dataclass_fields__", {}):
        return "Poller"
    return None


def make_poller(spec: dict[str, Any]) -> Poller:
    if spec.get("nice"):
        # Preparing only: the parts measured beside it come first. The benchmark sets the
        # priority back before the cycles it measures.
        os.nice(int(spec["nice"]))
    settings = settings_from_mapping(spec["settings"], source="bench spec")
    clock = spec_clock(spec)
    frugal = spec["mode"] == "frugal"
    switch = frugal_switch()
    if switch == "build_poller":
        return build_poller(settings, clock=clock, frugal=frugal)  # type: ignore[call-arg]
    poller = build_poller(settings, clock=clock)
    if switch == "Poller":
        poller.frugal = frugal  # type: ignore[attr-defined]
    return poller


class Unpaced:
    """A pacer that never waits (the client's :class:`~remote_guard.graph.pacing.Pacer` has
    the same methods)."""

    waited_seconds = 0.0

    @contextmanager
    def paced(self, _requests: Iterable[tuple[str, str]]) -> Iterator[None]:
        yield None

    def acquire(self, _requests: Iterable[tuple[str, str]]) -> None:
        return None

    def release(self, _slot: object) -> None:
        return None

    def wait(self, _requests: Iterable[tuple[str, str]]) -> float:
        return 0.0


def _status_kb(field: str) -> int | None:
    try:
        lines = Path("/proc/self/status").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB.

    ``VmHWM`` is the high-water mark of this process's own address space. ``ru_maxrss`` is the
    fallback where there is no ``/proc``: on Linux it also keeps the resident size of the
    process this one was forked from at the moment of ``exec`` (the fake tenant's, here).
    """
    high_water = _status_kb("VmHWM")
    if high_water is None:
        high_water = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(high_water / 1024, 1)


def rss_mb() -> float | None:
    current = _status_kb("VmRSS")
    return None if current is None else round(current / 1024, 1)


def apply_poll_overrides(poller: Poller, spec: dict[str, Any], cycle: int) -> dict[str, Any]:
    """``[poll]`` settings the spec changes from cycle ``cycle`` on (0 is the first), for
    measuring one poller process with another setting; what is now in force."""
    overrides: dict[str, Any] = {}
    for first, changes in spec.get("poll_from_cycle") or []:
        if cycle >= int(first):
            overrides.update(changes)
    if overrides:
        settings = poller.settings
        poll = settings.poll.model_copy(update=overrides)
        poller.settings = settings.model_copy(update={"poll": poll})
    return overrides


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    configure_logging(LoggingSettings(level="error"))
    out = Path(spec["out"])
    results: dict[str, Any] = {
        "mode": spec["mode"],
        "frugal_switch": frugal_switch(),
        "cycles": [],
        "rss_after_start_mb": None,
        "peak_rss_mb": None,
    }
    poller = make_poller(spec)
    results["rss_after_start_mb"] = peak_rss_mb()
    if spec.get("scheduled"):
        return scheduled(poller, spec, results, out)
    stop_file = Path(spec["stop_file"]) if spec.get("stop_file") else None
    cycles = spec.get("cycles")
    interval = float(spec.get("interval_seconds") or 0)
    number = 0
    while True:
        if cycles is not None and number >= cycles:
            break
        if stop_file is not None and stop_file.exists():
            break
        overrides = apply_poll_overrides(poller, spec, number)
        started_wall = time.time()
        cpu_before = time.process_time()
        before = poller.graph.stats.snapshot()
        prepared = bool(spec.get("unpaced")) or (bool(spec.get("prepare")) and number == 0)
        paced = poller.graph.pacer
        if prepared:
            # Preparing the state for the cycles measured after it: the same requests and
            # answers, without waiting to stay under Graph's rate limits (the fake tenant has
            # its throttling off for this cycle).
            poller.graph.pacer = Unpaced()  # type: ignore[assignment]
        began = time.perf_counter()
        try:
            result = run_poll(poller)
        finally:
            poller.graph.pacer = paced
        seconds = time.perf_counter() - began
        cpu_seconds = time.process_time() - cpu_before
        after = poller.graph.stats.snapshot()
        results["cycles"].append(
            {
                "started": started_wall,
                "finished": time.time(),
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu_seconds, 3),
                "poll_overrides": overrides,
                "rss_mb": rss_mb(),
                "status": result.status,
                "requests": after["requests"] - before["requests"],
                "batch_items": after["batch_items"] - before["batch_items"],
                "throttled": after["throttled"] - before["throttled"],
                "retries": after["retries"] - before["retries"],
                "by_endpoint": _delta(before["by_endpoint"], after["by_endpoint"]),
                "batched_by_endpoint": _delta(
                    before.get("batched_by_endpoint", {}), after.get("batched_by_endpoint", {})
                ),
                "counts": dict(result.counts),
                "errors": result.errors[:5],
                "prepared": prepared,
            }
        )
        results["peak_rss_mb"] = peak_rss_mb()
        _write(out, results)
        _memory_report(out, number)
        number += 1
        if spec.get("pause_after") == number:
            # The benchmark changes the fake tenant's knobs (latency, throttling) while the
            # poller waits, then lets it go on.
            go = Path(f"{out}.go")
            while not go.exists():
                time.sleep(0.1)
        if interval > 0:
            wait = started_wall + interval - time.time()
            while wait > 0 and not (stop_file is not None and stop_file.exists()):
                time.sleep(min(wait, 0.2))
                wait = started_wall + interval - time.time()
    results["peak_rss_mb"] = peak_rss_mb()
    results["finished_at"] = datetime.now(UTC).isoformat()
    _write(out, results)
    return 0


def scheduled(poller: Poller, spec: dict[str, Any], results: dict[str, Any], out: Path) -> int:
    """Run the poller as the service does (``run_scheduled``, every ``interval_seconds``),
    with change notifications when the settings turn them on, until the stop file appears."""
    from remote_guard.poll.scheduler import run_scheduled

    stop = threading.Event()
    stop_file = Path(spec["stop_file"])

    def watch() -> None:
        while not stop_file.exists():
            time.sleep(0.2)
        stop.set()

    threading.Thread(target=watch, name="stop-file", daemon=True).start()

    def record(result: PollResult) -> None:
        results["cycles"].append(
            {
                "started": result.started_at.isoformat(),
                "finished": result.finished_at.isoformat(),
                "seconds": round(result.seconds, 3),
                "status": result.status,
                "requests": result.graph.get("requests_this_run"),
                "counts": dict(result.counts),
                "errors": result.errors[:5],
            }
        )
        results["peak_rss_mb"] = peak_rss_mb()
        _write(out, results)

    interval = float(spec["interval_seconds"])
    if not poller.settings.notifications.enabled:
        run_scheduled(
            poller,
            interval_seconds=interval,
            stop=stop,
            on_result=record,
            install_signal_handlers=False,
        )
    else:
        from remote_guard.subscriptions.hub import Notifications, ReceiverServer

        config = poller.settings.notifications
        hub = Notifications(poller)
        hub.attach()
        hub.start()
        receiver = ReceiverServer(
            config.listen_host,
            config.listen_port,
            certfile=config.tls_cert_file,
            keyfile=config.tls_key_file,
        )
        receiver.start(hub.app())
        results["receiver"] = receiver.url(config.receiver_path)
        _write(out, results)
        try:
            run_scheduled(
                poller,
                interval_seconds=interval,
                stop=stop,
                on_result=record,
                install_signal_handlers=False,
                wake=hub.waker.due,
                jobs=hub.jobs(),
            )
        finally:
            receiver.stop()
            hub.stop()
    results["peak_rss_mb"] = peak_rss_mb()
    results["finished_at"] = datetime.now(UTC).isoformat()
    _write(out, results)
    return 0


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        name: count - before.get(name, 0)
        for name, count in after.items()
        if count - before.get(name, 0)
    }


def _memory_report(out: Path, number: int) -> None:
    """With REMOTE_GUARD_BENCH_TRACEMALLOC set, the biggest holders of memory after a cycle."""
    if not os.environ.get("REMOTE_GUARD_BENCH_TRACEMALLOC"):
        return
    import tracemalloc

    snapshot = tracemalloc.take_snapshot()
    lines = [f"after cycle {number + 1}: {peak_rss_mb()} MB peak RSS"]
    for stat in snapshot.statistics("traceback")[:25]:
        lines.append(f"{stat.size / 1e6:8.1f} MB in {stat.count} blocks")
        lines.extend(f"    {frame}" for frame in stat.traceback.format()[-6:])
    report = out.with_suffix(f".memory{number + 1}.txt")
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write(path: Path, results: dict[str, Any]) -> None:
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(results, indent=1), encoding="utf-8")
    partial.replace(path)


if __name__ == "__main__":
    if os.environ.get("REMOTE_GUARD_BENCH_TRACEMALLOC"):
        import tracemalloc

        tracemalloc.start(8)
    if os.environ.get("REMOTE_GUARD_BENCH_PROFILE"):
        # A profile of the poller process, for finding where a cycle's time goes.
        import cProfile

        cProfile.run("main(sys.argv[1:])", os.environ["REMOTE_GUARD_BENCH_PROFILE"])
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
