"""The markdown table of a benchmark run: each figure, its value, its target and whether it is
met; a figure that could not be measured says why instead of showing a number."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


def load_rows(load: dict[str, Any] | None) -> list[Row]:
    missing = _not_measured(load)
    if missing or load is None:
        return [Row("Graph load (first sync, steady state, naive baseline)", missing or "")]
    rows: list[Row] = []
    frugal = load.get("frugal") or {}
    size = load.get("size", {})
    schools = size.get("schools")
    first = frugal.get("first_full_sync", {})
    steady = frugal.get("steady_state", {})
    later = frugal.get("steady_state_cycles", [])
    first_latency = frugal.get("first_sync_latency_ms", frugal.get("latency_ms"))
    steady_latency = frugal.get("latency_ms")
    scale = f"{schools} schools, {load.get('tenant', {}).get('sessions')} sessions"
    rows.append(
        Row(
            "First full sync, frugal: wall time",
            _seconds(first.get("seconds")),
            "",
            None,
            f"{scale}; latency {first_latency:g} ms per request; poller in its own process",
        )
    )
    rows.append(
        Row(
            "First full sync, frugal: Graph requests",
            f"{first.get('client_http_requests')} HTTP ({first.get('client_batch_items')} "
            "$batch items)",
            how=f"{scale}; counted by the client and by the fake tenant's log",
        )
    )
    steady_seconds = [steady.get("seconds")] + [c.get("seconds") for c in later]
    worst = max((s for s in steady_seconds if s is not None), default=None)
    rows.append(
        Row(
            "Steady-state cycle, frugal: wall time",
            " / ".join(_seconds(s) for s in steady_seconds),
            "<= 5 s",
            None if worst is None else worst <= 5,
            f"{scale}; latency {steady_latency:g} ms; nothing changed since the previous cycle",
        )
    )
    rows.append(
        Row(
            "Steady-state cycle, frugal: Graph requests",
            f"{steady.get('client_http_requests')} HTTP ({steady.get('client_batch_items')} "
            "$batch items)",
            how=scale,
        )
    )
    throttled_steady = sum(
        (c.get("served") or {}).get("throttled_responses", 0) for c in [steady, *later]
    )
    rows.append(
        Row(
            "Throttling responses (429) in steady state",
            str(throttled_steady),
            "0",
            throttled_steady == 0,
            "429s served by the fake tenant (HTTP and $batch items) during the steady cycles",
        )
    )
    rows.append(
        Row(
            "Throttling responses (429) in the first full sync",
            str((first.get("served") or {}).get("throttled_responses")),
            how="the client paces itself under the published limits; 429s are retried",
        )
    )
    rss = frugal.get("peak_rss_mb")
    rows.append(
        Row(
            "Poller peak memory (RSS)",
            "n/a" if rss is None else f"{rss:.0f} MB",
            "< 250 MB",
            None if rss is None else rss < 250,
            "ru_maxrss of the poller process, over the first sync and the steady cycles",
        )
    )
    naive = load.get("naive")
    missing = _not_measured(naive)
    if missing:
        rows.append(Row("Naive baseline", missing))
        return rows
    sample = load.get("naive_sample", {})
    frugal_sample = load.get("frugal_sample", {})
    for phase, label in (("first_full_sync", "first full sync"), ("steady_state", "steady state")):
        derived = naive.get(phase, {})
        rows.append(
            Row(
                f"Naive {label}: Graph requests / wall time",
                f"{derived.get('http_requests')} / {_seconds(derived.get('seconds_at_latency'))}",
                how=naive.get("how", ""),
            )
        )
        ratio = _get(load, "ratios", phase)
        sample_ratio = (ratio or {}).get("sample_http")
        full_ratio = (ratio or {}).get("full_http")
        rows.append(
            Row(
                f"Naive / frugal Graph requests, {label}",
                f"{sample_ratio}x on the sample; {full_ratio}x at full size",
                ">= 10x",
                None if full_ratio is None else full_ratio >= 10,
                f"sample: naive {sample.get(phase, {}).get('client_http_requests')} vs frugal "
                f"{frugal_sample.get(phase, {}).get('client_http_requests')} HTTP requests on "
                f"{sample.get('schools')} schools, both measured in this run",
            )
        )
    return rows


def detection_rows(detection: dict[str, Any] | None) -> list[Row]:
    missing = _not_measured(detection)
    if missing or detection is None:
        return [Row("Detection latency", missing or "")]
    rows: list[Row] = []
    scale = detection.get("scale", "")
    for mode, target in (("with_notifications", 10.0), ("polling_alone", 60.0)):
        data = detection.get(mode)
        missing = _not_measured(data)
        label = "with notifications" if mode == "with_notifications" else "polling alone"
        if missing or data is None:
            rows.append(Row(f"Detection, {label}", missing or ""))
            continue
        ends_after = _get(detection, "options", "lesson_ends_after")
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
                f"{data['sessions']} sessions; server time of GET /dsl as a trust-wide DSL, "
                f"{data['requests']} requests after one warm-up",
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
