"""Benchmark parts run in a process of their own, beside the full-size first sync.

``python -m bench._side SPEC.json`` runs, one after the other, the parts the spec names
(``sample``: naive and frugal polling on the sample of schools; ``detection``: detection
latency on a trust of its own; ``audit_verify``, ``chaos_soak``) and writes their figures to the
spec's ``out`` file. They run while the full-size poller prepares its first full sync (whose
wall time is not a figure), each with a fake tenant of its own in this process, so that they do
not share the full-size fake tenant's Python lock.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from remote_guard.logs import configure_logging
from remote_guard.settings import LoggingSettings


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    configure_logging(LoggingSettings(level="error"))
    out = Path(spec["out"])
    results: dict[str, Any] = {}
    for part in spec["parts"]:
        began = time.perf_counter()
        print(f"== bench.{part} (beside the full-size sync)", flush=True)
        try:
            results[part] = run_part(part, spec)
        except Exception as exc:  # noqa: BLE001 - one failed part is reported, the rest run
            traceback.print_exc()
            results[part] = {"not_measured": f"the part failed: {type(exc).__name__}: {exc}"}
        results[part]["seconds"] = round(time.perf_counter() - began, 1)
        out.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 0


def run_part(part: str, spec: dict[str, Any]) -> dict[str, Any]:
    if part == "sample":
        from bench import graph_load
        from bench.trust import TrustSize

        size = TrustSize(**spec["size"])
        options = graph_load.LoadOptions(**spec["load_options"])
        return graph_load.sample(size, Path(spec["folder"]) / "sample", options, note=_note)
    if part == "detection":
        from bench import detection
        from bench.trust import TrustSize

        wanted = spec["detection"]
        return detection.run_on_own_trust(
            TrustSize(**wanted["size"]),
            Path(spec["folder"]) / "detection",
            detection.DetectionOptions(**wanted["options"]),
            latency_ms=float(wanted["latency_ms"]),
            note=_note,
        )
    if part == "audit_verify":
        from bench import audit_verify

        return audit_verify.main()
    if part == "chaos_soak":
        from bench import chaos_soak

        return chaos_soak.main()
    raise ValueError(f"no side part called {part}")


def _note(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
