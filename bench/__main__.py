"""Run the benchmarks (``python -m bench``, ``make bench``) and write their results.

Parts: ``graph_load`` (first full sync and steady state, frugal and naive), ``detection``
(breach to stored finding, with notifications and with polling alone) and ``queue_page`` (the
DSL queue over 100,000 findings, SQLite and PostgreSQL) run by default; ``audit_verify`` and
``chaos_soak`` only when named. ``python -m bench queue_page detection`` runs those.

Each part's figures go to ``bench/results/<part>.json``, the run's sizes, machine and load to
``run.json``, and the table of every figure, its target and whether it is met to
``bench/results/summary.md`` (a figure that could not be measured says why; an estimate says
so). The defaults fit in ten minutes on a two-core machine (``docs/performance.md``).

Order: the full-size trust (50 schools, 2,500 staff, 25,000 pupils, 5,000 sessions) is served
and its poller prepares the first full sync (latency 0, not paced: its wall time is not a
figure; ``--faithful-first-sync`` paces it as in production, far longer). Beside it, in
processes of their own with fake tenants of their own, run the naive/frugal sample and the
detection runs (on a smaller trust of the same generator). Once those are done, with nothing
else of the benchmark running, the full-size steady-state cycles, then the queue page.
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
DEFAULT_PARTS = ("graph_load", "detection", "queue_page")
RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "parts",
        nargs="*",
        help=f"parts to run, of {', '.join(PARTS)} (default: {', '.join(DEFAULT_PARTS)})",
    )
    parser.add_argument("--schools", type=int, default=50)
    parser.add_argument("--staff-per-school", type=int, default=50)
    parser.add_argument("--pupils-per-school", type=int, default=500)
    parser.add_argument("--sessions-per-school", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--sample-schools", type=int, default=2)
    parser.add_argument("--steady-cycles", type=int, default=2)
    parser.add_argument("--faithful-first-sync", action="store_true")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--wide-concurrency", type=int, default=32)
    parser.add_argument(
        "--detection-schools", type=int, default=5, help="size of the detection runs' trust"
    )
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
    parts = args.parts or list(DEFAULT_PARTS)
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
    load = {"start": machine_load()}
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
        wide_concurrency=args.wide_concurrency,
        faithful_first_sync=args.faithful_first_sync,
        naive=not args.no_naive,
    )
    detection_spec = {
        "size": {**size.__dict__, "schools": min(args.detection_schools, size.schools)},
        "options": detection.DetectionOptions(
            per_kind=args.per_kind, interval_seconds=args.interval
        ).__dict__,
        "latency_ms": args.latency_ms,
    }
    folder = Path(tempfile.mkdtemp(prefix="remote-guard-bench-"))
    results: dict[str, Any] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        sides = []
        side_jobs = [
            ("sample", ["sample"] if "graph_load" in parts else []),
            ("detection", ["detection"] if "detection" in parts else []),
            ("extras", [p for p in ("audit_verify", "chaos_soak") if p in parts]),
        ]
        tenant = None
        if {"graph_load", "queue_page"} & set(parts):
            note(f"== serving the trust ({size.schools} schools, {size.sessions} sessions)")
            tenant = TrustTenant(size, folder=folder / "full", latency_ms=args.latency_ms)
            note(f"  {tenant.timings()}")
        run = None
        if tenant is not None and "graph_load" in parts:
            note(
                "== full-size first sync" + (" (prepared)" if not args.faithful_first_sync else "")
            )
            run, _url = graph_load.start_full(tenant, load_options)
        for name, side_parts in side_jobs:
            if side_parts:
                spec = {"size": size.__dict__, "load_options": load_options.__dict__}
                spec["detection"] = detection_spec
                sides.append(_start_side(name, side_parts, folder, spec))
        if run is not None:
            run.wait_for_cycles(1)
            note("== full-size first sync done")
        side_results: dict[str, Any] = {}
        if sides:
            note("== waiting for the parts running beside it")
            for side in sides:
                side_results.update(_finish_side(side))
        if tenant is not None and run is not None:
            # Nothing else of the benchmark runs now: the steady-state wall times are figures.
            note("== full-size steady-state cycles")
            load["before_steady_state"] = machine_load()
            full = graph_load.finish_full(tenant, run, load_options, note=note)
            full["tenant"] = tenant.timings()
            sampled = side_results.pop("sample", None) or {}
            if "not_measured" in sampled:
                sampled = {"frugal": sampled, "naive": sampled}
            results["graph_load"] = graph_load.combine(full, sampled, size, load_options)
            results["graph_load"]["tenant"] = full["tenant"]
        if isinstance(side_results.get("detection"), dict):
            side_results["detection"]["beside_full_sync"] = run is not None
        results.update(side_results)
        if "queue_page" in parts and tenant is not None:
            note("== DSL queue page")
            load["before_queue_page"] = machine_load()
            try:
                results["queue_page"] = queue_page.run(
                    tenant, folder / "queue", findings=args.findings, note=note
                )
            except Exception as exc:  # noqa: BLE001 - reported in the table
                traceback.print_exc()
                results["queue_page"] = {
                    "not_measured": f"the run failed: {type(exc).__name__}: {exc}"
                }
        if tenant is not None:
            tenant.close()
    finally:
        if args.keep:
            note(f"working folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    load["end"] = machine_load()
    seconds = round(time.perf_counter() - began, 1)
    _write(args, parts, results, seconds, load)
    note(f"== done in {seconds} s; results in {args.out}")
    return 0


def machine_load() -> dict[str, Any]:
    """The machine's load averages (1, 5, 15 minutes) and ``uptime``'s line, now."""
    one, five, fifteen = os.getloadavg()
    try:
        line = subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        line = ""
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_1m": round(one, 2),
        "load_5m": round(five, 2),
        "load_15m": round(fifteen, 2),
        "uptime": line,
    }


def _start_side(
    name: str, parts: list[str], folder: Path, extra: dict[str, Any]
) -> tuple[subprocess.Popen[bytes], Path]:
    folder = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"parts": parts, "folder": str(folder), "out": str(folder / "side.json"), **extra}
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
    args: argparse.Namespace,
    parts: list[str],
    results: dict[str, Any],
    seconds: float,
    load: dict[str, Any],
) -> None:
    from bench._summary import header, markdown

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
        "load": load,
    }
    for part, figures in results.items():
        (args.out / f"{part}.json").write_text(
            json.dumps(figures, indent=1, default=str) + "\n", encoding="utf-8"
        )
    (args.out / "run.json").write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    (args.out / "summary.md").write_text(markdown(results, header=header(run)), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
