"""Run every benchmark module in this folder (``python -m bench``), or the ones named
(``python -m bench audit_verify``). Each module has a ``main() -> dict`` returning its figures."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path


def _modules() -> list[str]:
    folder = Path(__file__).parent
    return sorted(
        info.name for info in pkgutil.iter_modules([str(folder)]) if not info.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    names = argv or _modules()
    unknown = sorted(set(names) - set(_modules()))
    if unknown:
        print(f"no benchmark called {', '.join(unknown)}; known: {', '.join(_modules())}")
        return 2
    for name in names:
        print(f"== bench.{name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        figures = module.main()
        print(json.dumps(figures, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
