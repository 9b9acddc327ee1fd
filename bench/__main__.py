"""Run the benchmarks (``python -m bench``, ``make bench``) and write their results.

Parts: ``graph_load`` (first full sync and steady state, frugal and naive), ``detection``
(breach to stored finding, with notifications and with polling alone), ``queue_page`` (the DSL
queue over 100,000 findings, SQLite and PostgreSQL), ``audit_verify`` and ``chaos_soak``.
``python -m bench`` runs them all; ``python -m bench queue_page detection`` runs those.

Each part's figures go to ``bench/results/<part>.json`` and the table of every figure, its
target and whether it is met to ``bench/results/summary.md`` (a figure that could not be
measured says why). The default sizes fit in ten minutes on a two-core machine: the large trust
(50 schools, 2,500 staff, 25,000 pupils, 5,000 sessions) at 100 ms per request, with the first
full sync prepared rather than paced (see ``bench/graph_load.py``); ``--faithful-first-sync``
runs it as in production (about a quarter of an hour more).

Order: the full-size trust is served; its poller prepares the first full sync while a second
process runs the audit trail and the chaos soak (figures that do not depend on time alone);
then, with nothing else running, the steady-state cycles, the naive/frugal sample, the
detection runs and the queue page.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PARTS = ("graph_load", "detection", "queue_page", "audit_verify", "chaos_soak")
RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", help=f"parts to run (default all): {', '.join(PARTS)}")
    parser.add_argument("--schools", type=int, default=50)
    parser.add_argument("--staff-per-school", type=int, default=50)
    parser.add_argument("--pupils-per-school", type=int, default=500)
    parser.add_argument("--sessions-per-school", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--sample-schools", type=int, default=2)
    parser.add_argument("--steady-cycles", type=int, default=2)
    parser.add_argument("--faithful-first-sync", action="store_true")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--per-kind", type=int, default=5, help="breaches of each kind, per mode")
    parser.add_argument("--interval", type=float, default=30.0, help="poll interval, seconds")
    parser.add_argument("--findings", type=int, default=100_000)
    parser.add_argument("--audit-entries", type=int, default=100_000)
    parser.add_argument("--chaos-seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    return parser.parse_args(argv)


def note(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str]) -> int:  # noqa: PLR0915 (the run, read top to bottom)
    args = parse_args(argv)
    parts = args.parts or list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        note(f"no benchmark called {', '.join(unknown)}; known: {', '.join(PARTS)}")
        return 2
    os.environ["REMOTE_GUARD_BENCH_ENTRIES"] = str(args.audit_entries)
    os.environ["REMOTE_GUARD_BENCH_CHAOS_SEEDS"] = str(args.chaos_seeds)

    from bench import detection, graph_load, queue_page
    from bench._harness import TrustTenant
    from bench.trust import TrustSize
    from remote_guard.logs import configure_logging
    from remote_guard.settings import LoggingSettings

    configure_logging(LoggingSettings(level="error"))
    began = time.perf_counter()
    size = TrustSize(
        schools=args.schools,
        staff_per_school=args.staff_per_school,
        pupils_per_school=args.pupils_per_school,
        sessions_per_school=args.sessions_per_school,
    )
    load_options = graph_load.LoadOptions(
        latency_ms=args.latency_ms,
        sample_schools=args.sample_schools,
        steady_cycles=args.steady_cycles,
        faithful_first_sync=args.faithful_first_sync,
        naive=not args.no_naive,
    )
    folder = Path(tempfile.mkdtemp(prefix="remote-guard-bench-"))
    results: dict[str, Any] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        side_parts = [p for p in ("audit_verify", "chaos_soak") if p in parts]
        needs_trust = {"graph_load", "detection", "queue_page"} & set(parts)
        tenant = None
        if needs_trust:
            note(f"== serving the trust ({size.schools} schools, {size.sessions} sessions)")
            tenant = TrustTenant(size, folder=folder / "full", latency_ms=args.latency_ms)
            note(f"  {tenant.timings()}")
        side = _start_side(side_parts, folder, size, load_options) if side_parts else None
        full: dict[str, Any] | None = None
        synced: Path | None = None
        if tenant is not None and ({"graph_load", "detection"} & set(parts)):
            note(
                "== full-size first sync" + (" (prepared)" if not args.faithful_first_sync else "")
            )
            run, url = graph_load.start_full(tenant, load_options)
            run.wait_for_cycles(1)
            if side is not None:
                note("== waiting for the parts running beside it")
                results.update(_finish_side(side))
                side = None
            note("== full-size steady-state cycles")
            full = graph_load.finish_full(tenant, run, load_options, note=note)
            full["tenant"] = tenant.timings()
            synced = Path(url.removeprefix("sqlite:///"))
        if side is not None:
            results.update(_finish_side(side))
        if "graph_load" in parts and full is not None:
            # The sample runs with nothing else running: its wall times are figures.
            note("== naive and frugal on the sample")
            sampled = graph_load.sample(size, folder / "sample", load_options, note=note)
            results["graph_load"] = graph_load.combine(full, sampled, size, load_options)
            results["graph_load"]["tenant"] = full["tenant"]
        if "detection" in parts and tenant is not None and synced is not None:
            note("== detection")
            detection_options = detection.DetectionOptions(
                per_kind=args.per_kind, interval_seconds=args.interval
            )
            try:
                results["detection"] = detection.run(
                    tenant, synced, folder / "detection", detection_options, note=note
                )
                results["detection"]["scale"] = f"{size.schools} schools, {size.sessions} sessions"
            except Exception as exc:  # noqa: BLE001 - reported in the table, the rest runs
                traceback.print_exc()
                results["detection"] = {
                    "not_measured": f"the run failed: {type(exc).__name__}: {exc}"
                }
        if "queue_page" in parts and tenant is not None:
            note("== DSL queue page")
            results["queue_page"] = queue_page.run(
                tenant, folder / "queue", findings=args.findings, note=note
            )
        if tenant is not None:
            tenant.close()
    finally:
        if args.keep:
            note(f"working folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    seconds = round(time.perf_counter() - began, 1)
    _write(args, parts, results, seconds)
    note(f"== done in {seconds} s; results in {args.out}")
    return 0


def _start_side(
    parts: list[str], folder: Path, size: Any, options: Any
) -> tuple[subprocess.Popen[bytes], Path]:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "parts": parts,
        "folder": str(folder),
        "size": size.__dict__,
        "load_options": options.__dict__,
        "out": str(folder / "side.json"),
    }
    spec_path = folder / "side.spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    note(f"== beside it: {', '.join(parts)}")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench._side", str(spec_path)], cwd=REPO, env=env
    )
    return process, folder / "side.json"


def _finish_side(side: tuple[subprocess.Popen[bytes], Path]) -> dict[str, Any]:
    process, out = side
    process.wait()
    if not out.exists():
        return {}
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def _write(
    args: argparse.Namespace, parts: list[str], results: dict[str, Any], seconds: float
) -> None:
    from bench._summary import markdown

    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    run = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": seconds,
        "parts": parts,
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "machine": machine,
    }
    for part, figures in results.items():
        (args.out / f"{part}.json").write_text(
            json.dumps(figures, indent=1, default=str) + "\n", encoding="utf-8"
        )
    (args.out / "run.json").write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    header = (
        f"# Benchmark results\n\n`python -m bench {' '.join(parts)}` on {machine['cpus']} CPUs, "
        f"Python {machine['python']}, finished {run['finished']} in {seconds:.0f} s "
        f"(budget: 600 s). Each figure's JSON is beside this file; `docs/performance.md` "
        "explains how each is measured and what limits it."
    )
    (args.out / "summary.md").write_text(markdown(results, header=header), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
