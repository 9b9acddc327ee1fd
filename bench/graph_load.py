"""Graph requests and wall time of a first full sync and a steady-state cycle, frugal and naive.

The poller runs in a process of its own (:mod:`bench._worker`) against the trust served by the
fake tenant (:mod:`bench._harness`), each run with a fresh database holding the trust's
registers.

**Full size** (the large trust). A first full sync paced under Graph's published limits takes
far longer than the benchmark's time budget (Teams allows 20 chat message reads a second per
app and tenant, and the trust has thousands of meeting chats), so by default it is *prepared*:
the same requests with latency 0, the fake's throttling off and the client not waiting for its
pacer. Its request count is exact; its wall time is not a figure. Then, in the same poller
process, ``steady_cycles`` steady-state cycles run at the configured latency with throttling
on: these are the steady-state figures (wall time, requests, 429s), and the process's peak
memory is read after them. With ``faithful_first_sync`` the first sync runs at the configured
latency with throttling on and pacing, as in production (about 15 minutes for the large trust).

**Sample** (the first ``sample_schools`` schools of the same trust, same seed). Frugal: a first
full sync and a steady cycle at the configured latency with throttling and pacing, as in
production: the first sync's wall time as measured. Naive (sequential, no delta, no batching,
one call per meeting): the same two cycles at latency 0 without pacing or throttling, for exact
request counts; its wall time at the configured latency is derived as the measured time plus one
latency per request (naive requests are sequential by definition, and at 100 ms they stay under
every rate limit). Naive figures for the full trust are the sample's times ``schools / sample``
(every part of a cycle grows with the schools). The ratio is given on the sample (both modes
measured) and at full size (frugal measured, naive derived).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench._harness import TrustTenant, WorkerRun
from bench.trust import TrustSize


@dataclass(frozen=True)
class LoadOptions:
    latency_ms: float = 100.0
    sample_schools: int = 2
    steady_cycles: int = 2
    faithful_first_sync: bool = False
    naive: bool = True


def cycle_figures(tenant: TrustTenant, cycle: dict[str, Any]) -> dict[str, Any]:
    """One cycle as the client counted it and as the fake tenant served it."""
    since = tenant.clock.now + timedelta(seconds=cycle["started"] - tenant.clock.epoch)
    until = tenant.clock.now + timedelta(seconds=cycle["finished"] - tenant.clock.epoch)
    served = tenant.tally_between(since, until)
    return {
        "seconds": cycle["seconds"],
        "status": cycle["status"],
        "prepared": cycle.get("prepared", False),
        "client_http_requests": cycle["requests"],
        "client_batch_items": cycle["batch_items"],
        "client_throttled": cycle["throttled"],
        "client_retries": cycle["retries"],
        "served": served.as_dict(),
        "sessions": cycle["counts"].get("sessions", 0),
        "counts": cycle["counts"],
        "errors": cycle["errors"],
        "by_endpoint": cycle.get("by_endpoint", {}),
    }


def _note_cycle(note: Callable[[str], None], label: str, cycle: dict[str, Any]) -> None:
    note(
        f"  {label}: {cycle['seconds']:.1f} s, {cycle['client_http_requests']} requests "
        f"({cycle['client_batch_items']} batch items), {cycle['served']['throttled_responses']} "
        f"429s served, status {cycle['status']}"
    )


# --- full size -------------------------------------------------------------------------------


def start_full(tenant: TrustTenant, options: LoadOptions) -> tuple[WorkerRun, str]:
    """Start the full-size poller: its first full sync (prepared, unless faithful), after which
    it waits for :func:`finish_full`."""
    faithful = options.faithful_first_sync
    if faithful:
        tenant.reset_limits(latency_ms=options.latency_ms, throttling=True)
    else:
        tenant.reset_limits(latency_ms=0, throttling=False)
    url = tenant.new_database("full")
    run = tenant.run_worker(
        mode="frugal",
        database_url=url,
        cycles=1 + options.steady_cycles,
        prepare=not faithful,
        pause_after=1,
        wait=False,
    )
    return run, url


def finish_full(
    tenant: TrustTenant,
    run: WorkerRun,
    options: LoadOptions,
    *,
    note: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Wait for the first sync, then run the steady-state cycles at the configured latency with
    throttling on; the full-size figures."""
    run.wait_for_cycles(1)
    first_sync_mark = tenant.throttling_counts()
    tenant.reset_limits(latency_ms=options.latency_ms, throttling=True)
    run.go()
    results = run.wait()
    cycles = results.get("cycles", [])
    first = cycle_figures(tenant, cycles[0])
    steady = [cycle_figures(tenant, cycle) for cycle in cycles[1:]]
    _note_cycle(note, "full size, first full sync", first)
    for number, cycle in enumerate(steady, start=1):
        _note_cycle(note, f"full size, steady cycle {number}", cycle)
    return {
        "mode": "frugal",
        "schools": tenant.trust.size.schools,
        "frugal_switch": results.get("frugal_switch"),
        "first_sync_latency_ms": options.latency_ms if options.faithful_first_sync else 0,
        "first_sync_prepared": not options.faithful_first_sync,
        "latency_ms": options.latency_ms,
        "first_full_sync": first,
        "steady_state": steady[0] if steady else {},
        "steady_state_cycles": steady[1:],
        "peak_rss_mb": results.get("peak_rss_mb"),
        "rss_after_start_mb": results.get("rss_after_start_mb"),
        "throttling_429s_first_sync": first_sync_mark,
        "throttling_429s_steady_by_limit": tenant.throttling_counts(),
    }


# --- the sample ------------------------------------------------------------------------------


def two_cycles(
    tenant: TrustTenant,
    mode: str,
    *,
    latency_ms: float,
    paced: bool,
    note: Callable[[str], None],
) -> dict[str, Any]:
    """A first full sync and a steady-state cycle in ``mode`` on a fresh database; ``paced``:
    with the fake's throttling on and the client's pacing, else neither."""
    tenant.reset_limits(latency_ms=latency_ms, throttling=paced)
    url = tenant.new_database(f"sample-{mode}")
    run = tenant.run_worker(mode=mode, database_url=url, cycles=2, unpaced=not paced)
    results = run.wait()
    cycles = results.get("cycles", [])
    if len(cycles) != 2:
        raise RuntimeError(f"the {mode} poller ran {len(cycles)} cycles, not 2 (see {run.log})")
    figures = {
        "mode": mode,
        "latency_ms": latency_ms,
        "paced": paced,
        "schools": tenant.trust.size.schools,
        "sessions": tenant.trust.facts.total_sessions,
        "frugal_switch": results.get("frugal_switch"),
        "first_full_sync": cycle_figures(tenant, cycles[0]),
        "steady_state": cycle_figures(tenant, cycles[1]),
        "peak_rss_mb": results.get("peak_rss_mb"),
        "throttling_429s_by_limit": tenant.throttling_counts(),
    }
    for phase in ("first_full_sync", "steady_state"):
        _note_cycle(
            note,
            f"sample ({figures['schools']} schools) {mode} {phase}, {latency_ms:g} ms",
            figures[phase],
        )
    return figures


def sample(
    size: TrustSize, folder: Path, options: LoadOptions, *, note: Callable[[str], None] = print
) -> dict[str, Any]:
    """Naive and frugal on the first ``sample_schools`` schools of the trust."""
    sample_size = TrustSize(
        schools=min(options.sample_schools, size.schools),
        staff_per_school=size.staff_per_school,
        pupils_per_school=size.pupils_per_school,
        sessions_per_school=size.sessions_per_school,
    )
    tenant = TrustTenant(sample_size, folder=folder, latency_ms=0)
    try:
        results: dict[str, Any] = {}
        results["frugal"] = two_cycles(
            tenant, "frugal", latency_ms=options.latency_ms, paced=True, note=note
        )
        if options.naive:
            results["naive"] = two_cycles(tenant, "naive", latency_ms=0, paced=False, note=note)
        else:
            results["naive"] = {"not_measured": "naive mode was switched off for this run"}
    finally:
        tenant.close()
    return results


# --- together --------------------------------------------------------------------------------


def combine(
    full: dict[str, Any], sampled: dict[str, Any], size: TrustSize, options: LoadOptions
) -> dict[str, Any]:
    """The results of the part: full size, the sample, the naive figures derived for the full
    trust, and the ratios."""
    results: dict[str, Any] = {
        "options": options.__dict__,
        "size": size.__dict__,
        "frugal": full,
        "frugal_sample": sampled.get("frugal"),
        "naive_sample": sampled.get("naive"),
    }
    naive = sampled.get("naive") or {}
    if "first_full_sync" not in naive:
        results["naive"] = {"not_measured": naive.get("not_measured", "the sample did not run")}
        return results
    factor = size.schools / naive["schools"]
    results["naive"] = derive_naive(naive, factor, options.latency_ms)
    results["ratios"] = ratios(results)
    return results


def derive_naive(figures: dict[str, Any], factor: float, latency_ms: float) -> dict[str, Any]:
    """Naive figures for the full trust from the sample: requests times ``factor``; wall time at
    ``latency_ms`` = (measured time + one latency per request) times ``factor``."""
    derived: dict[str, Any] = {}
    for phase in ("first_full_sync", "steady_state"):
        cycle = figures[phase]
        requests = cycle["client_http_requests"]
        derived[phase] = {
            "http_requests": round(requests * factor),
            "seconds_at_latency": round(
                (cycle["seconds"] + requests * latency_ms / 1000) * factor, 1
            ),
        }
    derived["how"] = (
        f"derived from the {figures['schools']}-school sample (measured at "
        f"{figures['latency_ms']:g} ms, unpaced) times {factor:g}; wall time adds "
        f"{latency_ms:g} ms per request, as naive requests are sequential"
    )
    return derived


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """How many times fewer HTTP requests frugal polling makes than naive."""
    out: dict[str, Any] = {}
    for phase in ("first_full_sync", "steady_state"):
        naive_sample = results["naive_sample"][phase]["client_http_requests"]
        frugal_sample = results["frugal_sample"][phase]["client_http_requests"]
        naive_full = results["naive"][phase]["http_requests"]
        frugal_full = results["frugal"][phase]["client_http_requests"]
        out[phase] = {
            "sample_http": _ratio(naive_sample, frugal_sample),
            "full_http": _ratio(naive_full, frugal_full),
            # What Graph itself serves: every request, with each $batch item counted.
            "sample_served": _ratio(
                naive_sample,
                results["frugal_sample"][phase]["client_batch_items"]
                + frugal_sample
                - _envelopes(results["frugal_sample"][phase]),
            ),
        }
    return out


def _envelopes(cycle: dict[str, Any]) -> int:
    return int(cycle.get("by_endpoint", {}).get("/$batch", 0))


def _ratio(naive: float, frugal: float) -> float | None:
    return round(naive / frugal, 1) if frugal else None


def run_alone(
    size: TrustSize, folder: Path, options: LoadOptions, *, note: Callable[[str], None] = print
) -> dict[str, Any]:
    """The whole part on its own (full size, then the sample), for ``python -m bench
    graph_load``."""
    began = time.perf_counter()
    tenant = TrustTenant(size, folder=folder / "full", latency_ms=options.latency_ms)
    try:
        run, _url = start_full(tenant, options)
        full = finish_full(tenant, run, options, note=note)
        full["tenant"] = tenant.timings()
    finally:
        tenant.close()
    sampled = sample(size, folder / "sample", options, note=note)
    results = combine(full, sampled, size, options)
    results["seconds"] = round(time.perf_counter() - began, 1)
    return results
