"""Without Debian's chromium the browser tests skip with a clear message, except under CI=true,
where they fail: CI must never pass by skipping them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web import conftest


def test_missing_chromium_skips_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(conftest, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception) as skipped:
        conftest.require_chromium()

    assert "no-chromium is missing: install Debian's chromium" in str(skipped.value)


def test_missing_chromium_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(conftest, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception) as failed:
        conftest.require_chromium()

    assert "browser tests must run in CI" in str(failed.value)
