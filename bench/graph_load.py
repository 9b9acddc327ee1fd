"""Graph requests and wall time of a first full sync and a steady-state cycle, frugal and naive.

The poller runs in a process of its own (:mod:`bench._worker`) against the trust served by the
fake tenant (:mod:`bench._harness`), each run with a fresh database holding the trust's
registers.

**Full size** (the large trust). A first full sync paced under Graph's published limits takes
far longer than the benchmark's time budget (Teams allows 20 chat message reads a second per
app and tenant, and the trust has thousands of meeting chats; storing 70,000 findings with
their audit entries is itself minutes of CPU), so by default it is *prepared*: the same
requests with latency 0, the fake's throttling off and the client not waiting for its pacer.
Its request count is exact; its wall time is not a figure. Then, in the same poller process,
``steady_cycles`` steady-state cycles run at the configured latency with throttling on: these
are the steady-state figures (wall time, requests, 429s, CPU time of the poller and of the fake
tenant). One more steady cycle runs with ``[poll] max_concurrent_requests`` raised to
``wide_concurrency`` (a setting a large trust may choose; still within Graph's limits), to show
what bounds the cycle. The process's peak memory is read after all of them. With
``faithful_first_sync`` the first sync runs at the configured latency with throttling on and
pacing, as in production.

**Sample** (the first ``sample_schools`` schools of the same trust, same seed): frugal and
naive (sequential, no delta, no batching, one call per meeting) each run a first full sync and a
steady-state cycle at the configured latency with the fake's throttling on and the client's
pacing, as in production: requests and wall times as measured, and the ratio. Figures for the
full trust in naive mode are *estimates*: the sample's times ``schools / sample`` (every part of
a naive cycle grows with the schools); so is the faithful first sync of the full trust.
"""

from __future__ import annotations

import re
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench._harness import TrustTenant, WorkerRun
from bench.trust import TrustSize

# The nice value of the poller while it prepares the first full sync.
PREPARE_NICE = 10


@dataclass(frozen=True)
class LoadOptions:
    latency_ms: float = 100.0
    sample_schools: int = 2
    steady_cycles: int = 2
    wide_concurrency: int = 32  # 0: no cycle with more requests in flight
    faithful_first_sync: bool = False
    naive: bool = True


_ID_SEGMENT = re.compile(r"^[0-9a-f-]{20,}$|^[A-Za-z0-9%=_:.@-]{24,}$|^\d+$", re.IGNORECASE)


def endpoint_of(path: str) -> str:
    """A request path with its ids as ``{id}`` (``/v1.0/users/{id}/calendarView/delta``)."""
    bare = path.split("?", 1)[0]
    parts = ["{id}" if _ID_SEGMENT.match(part) else part for part in bare.split("/")]
    return "/".join(parts)


def served_by_endpoint(tenant: TrustTenant, since_mark: float, until_mark: float) -> dict[str, int]:
    """Graph requests the fake served between two wall-clock instants, by endpoint (``$batch``
    items counted one by one, envelopes as ``/v1.0/$batch``)."""
    since = tenant.clock.now + timedelta(seconds=since_mark - tenant.clock.epoch)
    until = tenant.clock.now + timedelta(seconds=until_mark - tenant.clock.epoch)
    counts: Counter[str] = Counter()
    for record in tenant.state.requests:
        if since <= record.at <= until and record.path.lower().startswith("/v1.0/"):
            counts[endpoint_of(record.path)] += 1
    return dict(counts.most_common())


def cycle_figures(tenant: TrustTenant, cycle: dict[str, Any]) -> dict[str, Any]:
    """One cycle as the client counted it and as the fake tenant served it."""
    since = tenant.clock.now + timedelta(seconds=cycle["started"] - tenant.clock.epoch)
    until = tenant.clock.now + timedelta(seconds=cycle["finished"] - tenant.clock.epoch)
    served = tenant.tally_between(since, until)
    http = cycle["requests"]
    envelopes = int(cycle.get("by_endpoint", {}).get("/$batch", 0))
    return {
        "seconds": cycle["seconds"],
        "poller_cpu_seconds": cycle.get("cpu_seconds"),
        "status": cycle["status"],
        "prepared": cycle.get("prepared", False),
        "poll_overrides": cycle.get("poll_overrides", {}),
        "client_http_requests": http,
        "client_batch_items": cycle["batch_items"],
        # What Graph counts against its limits: every request, each $batch item on its own.
        "graph_requests_items_counted": http - envelopes + cycle["batch_items"],
        "client_throttled": cycle["throttled"],
        "client_retries": cycle["retries"],
        "served": served.as_dict(),
        "served_by_endpoint": served_by_endpoint(tenant, cycle["started"], cycle["finished"]),
        "sessions": cycle["counts"].get("sessions", 0),
        "counts": cycle["counts"],
        "errors": cycle["errors"],
        "by_endpoint": cycle.get("by_endpoint", {}),
        "batched_by_endpoint": cycle.get("batched_by_endpoint", {}),
        "rss_mb_after": cycle.get("rss_mb"),
    }


def _note_cycle(note: Callable[[str], None], label: str, cycle: dict[str, Any]) -> None:
    note(
        f"  {label}: {cycle['seconds']:.1f} s, {cycle['client_http_requests']} requests "
        f"({cycle['client_batch_items']} batch items), {cycle['served']['throttled_responses']} "
        f"429s served, status {cycle['status']}"
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
    wide = 1 if options.wide_concurrency else 0
    run = tenant.run_worker(
        mode="frugal",
        database_url=url,
        cycles=1 + options.steady_cycles + wide,
        prepare=not faithful,
        pause_after=1,
        wait=False,
        # A prepared sync is not a figure: the parts measured beside it take the CPU first.
        nice=0 if faithful else PREPARE_NICE,
        poll_from_cycle=(
            [[1 + options.steady_cycles, {"max_concurrent_requests": options.wide_concurrency}]]
            if wide
            else None
        ),
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
    throttling on; the full-size figures.

    The fake tenant's CPU time (this process serves it) is read at each cycle's end, so each
    steady cycle also says how much of its wall time the fake itself spent serving it.
    """
    run.wait_for_cycles(1)
    first_sync_mark = tenant.throttling_counts()
    normal_priority = run.normal_priority()
    tenant.reset_limits(latency_ms=options.latency_ms, throttling=True)
    tenant_cpu: list[float | None] = []
    last_cpu, done = _cpu_seconds(), 1
    run.go()
    while run.process.poll() is None:
        cycles_now = run.cycles_done()
        if cycles_now > done:
            cpu = _cpu_seconds()
            # Two cycles ended between two looks (not expected): the CPU is not shared out.
            tenant_cpu.extend([round(cpu - last_cpu, 2)] + [None] * (cycles_now - done - 1))
            last_cpu, done = cpu, cycles_now
        time.sleep(0.05)
    results = run.wait()
    cycles = results.get("cycles", [])
    remaining = len(cycles) - 1 - len(tenant_cpu)
    if remaining > 0:
        tenant_cpu.extend([round(_cpu_seconds() - last_cpu, 2)] + [None] * (remaining - 1))
    first = cycle_figures(tenant, cycles[0])
    measured = [cycle_figures(tenant, cycle) for cycle in cycles[1:]]
    for cycle, cpu in zip(measured, tenant_cpu, strict=False):
        cycle["fake_tenant_cpu_seconds"] = cpu
    steady = [c for c in measured if not c["poll_overrides"]]
    wide = [c for c in measured if c["poll_overrides"]]
    _note_cycle(note, "full size, first full sync", first)
    for number, cycle in enumerate(steady, start=1):
        _note_cycle(note, f"full size, steady cycle {number}", cycle)
    for cycle in wide:
        _note_cycle(note, f"full size, steady cycle with {cycle['poll_overrides']}", cycle)
    return {
        "mode": "frugal",
        "schools": tenant.trust.size.schools,
        "sessions": tenant.trust.facts.total_sessions,
        "first_sync_latency_ms": options.latency_ms if options.faithful_first_sync else 0,
        "first_sync_prepared": not options.faithful_first_sync,
        "steady_cycles_at_normal_priority": normal_priority,
        "latency_ms": options.latency_ms,
        "first_full_sync": first,
        "steady_state": steady[0] if steady else {},
        "steady_state_cycles": steady,
        "steady_state_wide": wide[0] if wide else None,
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
        "database": url,
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
    """Naive and frugal on the first ``sample_schools`` schools of the trust, both as in
    production (the configured latency, throttling and pacing)."""
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
            results["naive"] = two_cycles(
                tenant, "naive", latency_ms=options.latency_ms, paced=True, note=note
            )
        else:
            results["naive"] = {"not_measured": "naive mode was switched off for this run"}
    finally:
        tenant.close()
    return results


# --- together --------------------------------------------------------------------------------


def combine(
    full: dict[str, Any], sampled: dict[str, Any], size: TrustSize, options: LoadOptions
) -> dict[str, Any]:
    """The results of the part: full size, the sample, the estimates for the full trust, and
    the ratios."""
    results: dict[str, Any] = {
        "options": options.__dict__,
        "size": size.__dict__,
        "frugal": full,
        "frugal_sample": sampled.get("frugal"),
        "naive_sample": sampled.get("naive"),
    }
    frugal_sample = sampled.get("frugal") or {}
    if "first_full_sync" in frugal_sample and full.get("first_sync_prepared"):
        factor = size.schools / frugal_sample["schools"]
        results["first_full_sync_estimate"] = {
            "seconds": round(frugal_sample["first_full_sync"]["seconds"] * factor),
            "how": (
                f"estimate, not measured: the {frugal_sample['schools']}-school sample's "
                f"first full sync at {frugal_sample['latency_ms']:g} ms with pacing "
                f"({frugal_sample['first_full_sync']['seconds']:.0f} s) times {factor:g}"
            ),
        }
    naive = sampled.get("naive") or {}
    if "first_full_sync" not in naive:
        results["naive"] = {"not_measured": naive.get("not_measured", "the sample did not run")}
        return results
    factor = size.schools / naive["schools"]
    results["naive"] = estimate_naive(naive, factor)
    results["ratios"] = ratios(results)
    return results


def estimate_naive(figures: dict[str, Any], factor: float) -> dict[str, Any]:
    """Naive figures for the full trust, estimated from the sample: requests and wall time
    times ``factor``."""
    estimated: dict[str, Any] = {"estimate": True}
    for phase in ("first_full_sync", "steady_state"):
        cycle = figures[phase]
        estimated[phase] = {
            "http_requests": round(cycle["client_http_requests"] * factor),
            "seconds": round(cycle["seconds"] * factor, 1),
        }
    estimated["how"] = (
        f"estimate, not measured: the {figures['schools']}-school naive sample (measured at "
        f"{figures['latency_ms']:g} ms) times {factor:g}"
    )
    return estimated


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """How many times fewer requests frugal polling makes than naive: HTTP requests (round
    trips), and requests as Graph counts them against its limits (each ``$batch`` item)."""
    out: dict[str, Any] = {}
    for phase in ("first_full_sync", "steady_state"):
        naive_sample = results["naive_sample"][phase]["client_http_requests"]
        frugal_sample = results["frugal_sample"][phase]
        naive_full = results["naive"][phase]["http_requests"]
        frugal_full = results["frugal"][phase]
        out[phase] = {
            "sample_http": _ratio(naive_sample, frugal_sample["client_http_requests"]),
            "sample_items_counted": _ratio(
                naive_sample, frugal_sample["graph_requests_items_counted"]
            ),
            "full_http_estimate": _ratio(naive_full, frugal_full["client_http_requests"]),
            "full_items_counted_estimate": _ratio(
                naive_full, frugal_full["graph_requests_items_counted"]
            ),
            "sample_seconds": _ratio(
                results["naive_sample"][phase]["seconds"], frugal_sample["seconds"]
            ),
        }
    return out


def _ratio(naive: float, frugal: float) -> float | None:
    return round(naive / frugal, 1) if frugal else None


def run_alone(
    size: TrustSize, folder: Path, options: LoadOptions, *, note: Callable[[str], None] = print
) -> dict[str, Any]:
    """The whole part on its own (full size, then the sample), for use from Python."""
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
