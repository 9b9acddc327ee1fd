"""The markdown table of a benchmark run: each figure, its value, its target and whether it is
met; a figure that could not be measured says why instead of showing a number.

``python -m bench._summary [FOLDER]`` writes ``summary.md`` again from the JSON files of a run
(``bench/results`` by default) without measuring anything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    figure: str
    value: str
    target: str = ""
    met: bool | None = None  # None: no target, or not measured
    how: str = ""

    def cells(self) -> list[str]:
        met = {True: "yes", False: "**no**", None: ""}[self.met]
        return [self.figure, self.value, self.target, met, self.how]


def _get(data: dict[str, Any] | None, *path: str) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _not_measured(data: Any) -> str | None:
    if data is None:
        return "not measured: this part did not run"
    if isinstance(data, dict) and "not_measured" in data:
        return f"not measured: {data['not_measured']}"
    return None


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _requests(cycle: dict[str, Any]) -> str:
    return (
        f"{cycle.get('client_http_requests')} HTTP ({cycle.get('client_batch_items')} $batch "
        f"items; {cycle.get('graph_requests_items_counted')} counting each item)"
    )


def _cpu(cycle: dict[str, Any]) -> str:
    poller = cycle.get("poller_cpu_seconds")
    fake = cycle.get("fake_tenant_cpu_seconds")
    parts = []
    if poller is not None:
        parts.append(f"poller CPU {poller:.1f} s")
    if fake is not None:
        parts.append(f"fake tenant CPU {fake:.1f} s")
    return ", ".join(parts)


def load_rows(load: dict[str, Any] | None) -> list[Row]:
    missing = _not_measured(load)
    if missing or load is None:
        return [Row("Graph load (first sync, steady state, naive baseline)", missing or "")]
    rows: list[Row] = []
    frugal = load.get("frugal") or {}
    schools = frugal.get("schools")
    first = frugal.get("first_full_sync", {})
    steady_cycles = frugal.get("steady_state_cycles") or [frugal.get("steady_state", {})]
    wide = frugal.get("steady_state_wide")
    latency = frugal.get("latency_ms")
    scale = f"{schools} schools, {frugal.get('sessions')} sessions"
    steady_seconds = [c.get("seconds") for c in steady_cycles]
    worst = max((s for s in steady_seconds if s is not None), default=None)
    rows.append(
        Row(
            "Steady-state cycle, frugal, full size: wall time",
            " / ".join(_seconds(s) for s in steady_seconds),
            "<= 5 s",
            None if worst is None else worst <= 5,
            f"{scale}; {latency:g} ms per request, throttling on; default settings (8 requests "
            f"in flight); one cycle after another, nothing changed in between; "
            f"{'; '.join(_cpu(c) for c in steady_cycles)}",
        )
    )
    if wide:
        setting = ", ".join(f"{k} = {v}" for k, v in wide.get("poll_overrides", {}).items())
        rows.append(
            Row(
                f"Steady-state cycle, frugal, full size, with [poll] {setting}",
                _seconds(wide.get("seconds")),
                "(<= 5 s)",
                None if wide.get("seconds") is None else wide["seconds"] <= 5,
                f"the same poller, one more cycle with this setting changed from its default; "
                f"{wide['served']['throttled_responses']} 429s; {_cpu(wide)}",
            )
        )
    steady = steady_cycles[0]
    rows.append(
        Row(
            "Steady-state cycle, frugal, full size: Graph requests",
            _requests(steady),
            how=f"{scale}; counted by the client, checked against the fake tenant's log",
        )
    )
    throttled_steady = sum(
        (c.get("served") or {}).get("throttled_responses", 0) for c in steady_cycles
    )
    rows.append(
        Row(
            "Throttling responses (429) in steady state, full size",
            str(throttled_steady),
            "0",
            throttled_steady == 0,
            "429s the fake tenant answered (HTTP and $batch items) during the default steady "
            "cycles, with Graph's published limits enforced",
        )
    )
    rss = frugal.get("peak_rss_mb")
    after = [c.get("rss_mb_after") for c in steady_cycles if c.get("rss_mb_after") is not None]
    rows.append(
        Row(
            "Poller peak memory (RSS), full size",
            "n/a" if rss is None else f"{rss:.0f} MB",
            "< 250 MB",
            None if rss is None else rss < 250,
            "VmHWM of the poller process over the first full sync and the steady cycles; "
            f"{frugal.get('rss_after_start_mb')} MB once started, "
            f"{(first.get('rss_mb_after') or 0):.0f} MB after the first sync, "
            f"{(after[-1] if after else 0):.0f} MB after the steady cycles",
        )
    )
    prepared = frugal.get("first_sync_prepared")
    estimate = load.get("first_full_sync_estimate") or {}
    if prepared:
        rows.append(
            Row(
                "First full sync, frugal, full size: wall time",
                f"estimate: {estimate.get('seconds', 'n/a')} s" if estimate else "not measured",
                how=(
                    f"{estimate.get('how', '')}; at full size the sync was prepared (latency 0, "
                    f"throttling off, no pacing) in {first.get('seconds', 0):.0f} s, "
                    "which is not a production figure"
                ),
            )
        )
    else:
        rows.append(
            Row(
                "First full sync, frugal, full size: wall time",
                _seconds(first.get("seconds")),
                how=f"{scale}; {frugal.get('first_sync_latency_ms'):g} ms per request, paced",
            )
        )
    rows.append(
        Row(
            "First full sync, frugal, full size: Graph requests",
            _requests(first),
            how=f"{scale}; the same requests whether prepared or paced; "
            f"{first.get('counts', {}).get('findings_created')} findings stored",
        )
    )
    rows.extend(sample_rows(load))
    return rows


def sample_rows(load: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    frugal = load.get("frugal_sample") or {}
    missing = _not_measured(frugal)
    if missing or not frugal:
        return [Row("Naive/frugal sample", missing or "not measured")]
    size = f"{frugal.get('schools')} schools, {frugal.get('sessions')} sessions"
    for phase, label in (("first_full_sync", "first full sync"), ("steady_state", "steady state")):
        cycle = frugal[phase]
        rows.append(
            Row(
                f"Frugal {label}, sample: wall time / Graph requests",
                f"{_seconds(cycle.get('seconds'))} / {_requests(cycle)}",
                how=f"{size}; {frugal['latency_ms']:g} ms, throttling and pacing on; "
                f"{cycle['served']['throttled_responses']} 429s",
            )
        )
    naive = load.get("naive_sample") or {}
    missing = _not_measured(naive)
    if missing or not naive:
        rows.append(Row("Naive baseline", missing or "not measured"))
        return rows
    for phase, label in (("first_full_sync", "first full sync"), ("steady_state", "steady state")):
        cycle = naive[phase]
        rows.append(
            Row(
                f"Naive {label}, sample: wall time / Graph requests",
                f"{_seconds(cycle.get('seconds'))} / {cycle.get('client_http_requests')} HTTP",
                how=f"{size}; sequential, no delta, no $batch, one call per meeting; "
                f"{naive['latency_ms']:g} ms, throttling and pacing on; "
                f"{cycle['served']['throttled_responses']} 429s",
            )
        )
    estimated = load.get("naive") or {}
    for phase, label in (("first_full_sync", "first full sync"), ("steady_state", "steady state")):
        derived = estimated.get(phase, {})
        rows.append(
            Row(
                f"Naive {label}, full size: wall time / Graph requests",
                f"estimate: {_seconds(derived.get('seconds'))} / "
                f"{derived.get('http_requests')} HTTP",
                how=estimated.get("how", ""),
            )
        )
    for phase, label in (("first_full_sync", "first full sync"), ("steady_state", "steady state")):
        ratio = _get(load, "ratios", phase) or {}
        http = ratio.get("sample_http")
        items = ratio.get("sample_items_counted")
        rows.append(
            Row(
                f"Naive / frugal HTTP requests, {label}",
                f"{http}x on the sample; estimate {ratio.get('full_http_estimate')}x at full size",
                ">= 10x",
                None if http is None else http >= 10,
                f"round trips; sample: naive {naive[phase]['client_http_requests']} vs frugal "
                f"{frugal[phase]['client_http_requests']}, both measured in this run; "
                f"wall time {ratio.get('sample_seconds')}x",
            )
        )
        rows.append(
            Row(
                f"Naive / frugal Graph requests counting each $batch item, {label}",
                f"{items}x on the sample; estimate "
                f"{ratio.get('full_items_counted_estimate')}x at full size",
                ">= 10x",
                None if items is None else items >= 10,
                f"as Graph counts requests against its limits; sample: naive "
                f"{naive[phase]['client_http_requests']} vs frugal "
                f"{frugal[phase]['graph_requests_items_counted']}",
            )
        )
    return rows


def detection_rows(detection: dict[str, Any] | None) -> list[Row]:
    missing = _not_measured(detection)
    if missing or detection is None:
        return [Row("Detection latency", missing or "")]
    rows: list[Row] = []
    scale = f"{detection.get('scale', '')}, {detection.get('latency_ms', 0):g} ms per request"
    if detection.get("beside_full_sync"):
        scale += ", run beside the full-size sync's preparation (CPU shared)"
    for mode, target in (("with_notifications", 10.0), ("polling_alone", 60.0)):
        data = detection.get(mode)
        missing = _not_measured(data)
        label = "with notifications" if mode == "with_notifications" else "polling alone"
        if missing or data is None:
            rows.append(Row(f"Detection, {label}", missing or ""))
            continue
        ends_after = _get(detection, "options", "lesson_ends_after")
        everything = data.get("all") or {}
        if mode == "with_notifications" and everything:
            p95 = everything.get("p95_s")
            rows.append(
                Row(
                    f"Detection {label}: every kind together",
                    _latency(everything),
                    f"p95 <= {target:g} s",
                    None if p95 is None else p95 <= target and not everything.get("missed"),
                    f"{scale}; {everything.get('count', 0)} breaches, "
                    f"{everything.get('missed', 0)} not detected within the run; the rows "
                    "below split it into the fake tenant's delivery and remote_guard's share",
                )
            )
            rows.append(
                Row(
                    f"Detection {label}: the fake tenant's delivery of the notification",
                    _latency(data.get("all_fake_delivery") or {}),
                    how="from the change in the fake tenant to the receiver's 202 (the fake "
                    "waits 0.3 s, then finds changes by looking over every subscription; "
                    "Graph documents under 10 s on average for chat messages and meeting "
                    "events, which this does not model)",
                )
            )
            share = data.get("all_after_delivery") or {}
            rows.append(
                Row(
                    f"Detection {label}: remote_guard's share (notification to stored "
                    "finding or SLT alert)",
                    _latency(share),
                    f"(p95 <= {target:g} s)",
                    None if share.get("p95_s") is None else share["p95_s"] <= target,
                    "from the receiver's 202 to the finding visible in the database (for a "
                    "live one-to-one, to its SLT alert; its finding waits for the rule's "
                    "threshold and the 15 s re-judging of open alerts)",
                )
            )
        for kind, entry in sorted((data.get("by_kind") or {}).items()):
            latency = entry.get("latency", {})
            value = _latency(latency)
            p95 = latency.get("p95_s")
            if p95 is None:
                # Nothing measured: a miss is a target not met; nothing tried is no verdict.
                met = False if latency.get("missed") else None
            else:
                met = p95 <= target and not latency.get("missed")
            how = f"{scale}; {latency.get('count', 0)} breaches measured"
            if latency.get("missed"):
                how += f", {latency['missed']} not detected within the run"
            if "after_lesson_end" in entry:
                # Read only once the lesson has ended: the rest of the lesson comes first.
                value = f"rest of the lesson + {_latency(entry['after_lesson_end'])}"
                met = False
                how += (
                    f"; a live lesson's chat and roster are read once it has ended, so the "
                    f"latency is the rest of the lesson plus this (here the lesson was ended "
                    f"{ends_after:g} s after the breach, a one-to-one 5 s after its threshold: "
                    f"{_latency(latency)} from the breach)"
                )
            if kind == "one_to_one":
                how += "; counted from when the one-to-one passed the rule's 120 s threshold"
            if entry.get("fake_delivery", {}).get("count"):
                how += (
                    f"; fake tenant's delivery {_latency(entry['fake_delivery'])}, then "
                    f"remote_guard {_latency(entry.get('after_delivery') or {})}"
                )
            rows.append(
                Row(
                    f"Detection {label}: {kind.replace('_', ' ')}",
                    value,
                    f"p95 <= {target:g} s",
                    met,
                    how,
                )
            )
            if "slt_alert" in entry:
                alert = entry["slt_alert"]
                rows.append(
                    Row(
                        f"SLT alert {label}: live one-to-one",
                        _latency(alert),
                        f"p95 <= {target:g} s",
                        None if alert.get("p95_s") is None else alert["p95_s"] <= target,
                        "from the moment the teacher was left alone with the pupil",
                    )
                )
    return rows


def _latency(summary: dict[str, Any]) -> str:
    if not summary or not summary.get("count"):
        return "none detected" if summary and summary.get("missed") else "n/a"
    return f"median {summary['median_s']:.1f} s, p95 {summary['p95_s']:.1f} s"


def queue_rows(queue: dict[str, Any] | None) -> list[Row]:
    missing = _not_measured(queue)
    if missing or queue is None:
        return [Row("DSL queue first page", missing or "")]
    rows = []
    for backend in ("sqlite", "postgresql"):
        data = queue.get(backend)
        missing = _not_measured(data)
        if missing or data is None:
            rows.append(Row(f"DSL queue first page, {backend}", missing or ""))
            continue
        rows.append(
            Row(
                f"DSL queue first page, {backend}",
                f"median {data['median_ms']:.0f} ms, p95 {data['p95_ms']:.0f} ms",
                "< 150 ms",
                data["p95_ms"] < 150,
                f"{data['findings']} findings ({data['open_findings']} open) in "
                f"{data['sessions']} sessions; server time of GET /dsl (default filters) as a "
                f"trust-wide DSL, {data['requests']} requests after one warm-up "
                f"({data['first_request_ms']:.0f} ms); "
                f"{data.get('graph_requests_while_timed', 'n/a')} Graph calls while timed",
            )
        )
    return rows


def other_rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    tenant = _get(results, "graph_load", "tenant")
    if tenant:
        rows.append(
            Row(
                "Trust generation / fake tenant build and start",
                f"{tenant['generate_seconds']:.1f} s / {tenant['build_seconds']:.1f} s + "
                f"{tenant['start_seconds']:.1f} s",
                how=f"{tenant['sessions']} sessions, seeded generator",
            )
        )
    audit = results.get("audit_verify")
    if isinstance(audit, dict) and "entries" in audit:
        rows.append(
            Row(
                "Audit trail verify",
                f"{audit['entries_per_second']} entries/s",
                how=f"{audit['entries']} entries",
            )
        )
    chaos = results.get("chaos_soak")
    if isinstance(chaos, dict) and "runs" in chaos:
        rows.append(
            Row(
                "Chaos soak: runs breaking an invariant",
                f"{chaos['broken_runs']} of {chaos['runs']}",
                "0",
                chaos["broken_runs"] == 0,
            )
        )
    return rows


SECTIONS: tuple[tuple[str, Callable[[dict[str, Any]], list[Row]]], ...] = (
    ("Graph load", lambda r: load_rows(r.get("graph_load"))),
    ("Detection latency", lambda r: detection_rows(r.get("detection"))),
    ("DSL review queue", lambda r: queue_rows(r.get("queue_page"))),
    ("Other", other_rows),
)


def header(run: dict[str, Any]) -> str:
    """The paragraph above the table: what ran, where, how long and under what load."""
    machine = run.get("machine", {})
    load = run.get("load", {})
    return (
        f"# Benchmark results\n\n`python -m bench {' '.join(run.get('parts', []))}` on "
        f"{machine.get('cpus')} CPUs, Python {machine.get('python')}, finished "
        f"{run.get('finished')} in {run.get('seconds', 0):.0f} s (budget: 600 s). Machine load "
        f"(1-minute average, other work on the machine included): "
        f"{_get(load, 'start', 'load_1m')} at the start, {_get(load, 'end', 'load_1m')} at the "
        "end. Each figure's JSON is beside this file; `docs/performance.md` explains how each "
        "is measured and what limits it. Figures marked *estimate* were not measured."
    )


def markdown(results: dict[str, Any], *, header: str) -> str:
    lines = [
        header,
        "",
        "| Figure | Value | Target | Met? | How measured |",
        "|---|---|---|---|---|",
    ]
    for _title, make in SECTIONS:
        for row in make(results):
            cells = [cell.replace("|", "\\|") for cell in row.cells()]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rewrite(folder: Path) -> Path:
    """Write ``summary.md`` again from the JSON files in ``folder`` (after a change to this
    table's wording; nothing is measured again)."""
    run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    results = {
        part: json.loads((folder / f"{part}.json").read_text(encoding="utf-8"))
        for part in run.get("parts", [])
        if (folder / f"{part}.json").exists()
    }
    out = folder / "summary.md"
    out.write_text(markdown(results, header=header(run)), encoding="utf-8")
    return out


if __name__ == "__main__":
    default = Path(__file__).resolve().parent / "results"
    print(rewrite(Path(sys.argv[1]) if len(sys.argv) > 1 else default))
