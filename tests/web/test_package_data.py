"""The web app's templates and static files ship in the wheel: each file under web/templates/
and web/static/ matches a [tool.setuptools.package-data] pattern (a glob whose * stays within
one folder, as setuptools reads it)."""

from __future__ import annotations

import tomllib
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "remote_guard"


def _shipped(relative: PurePosixPath, patterns: list[str]) -> bool:
    # PurePath.match anchors at the right only; equal depth makes it a whole-path match.
    return any(
        len(relative.parts) == len(PurePosixPath(p).parts) and relative.match(p) for p in patterns
    )


def test_templates_and_static_files_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["remote_guard"]
    files = [
        PurePosixPath(path.relative_to(PACKAGE).as_posix())
        for folder in ("web/templates", "web/static")
        for path in (PACKAGE / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert any(f.parts[2:3] == ("dsl",) for f in files)  # templates in sub-folders are seen
    missing = [str(f) for f in files if not _shipped(f, patterns)]
    assert not missing, f"not in package-data, so not in the wheel: {missing}"
