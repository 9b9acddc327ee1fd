"""Which half-term coverage is counted over, from the configured terms."""

from __future__ import annotations

from datetime import date

import pytest

from remote_guard.dropins.coverage import Coverage, current_period
from remote_guard.settings import TermSettings

AUTUMN_HALVES = (
    TermSettings(start=date(2026, 9, 3), end=date(2026, 10, 23)),
    TermSettings(start=date(2026, 11, 2), end=date(2026, 12, 18)),
)
WHOLE_AUTUMN_TERM = (TermSettings(start=date(2026, 9, 3), end=date(2026, 12, 18)),)


def test_the_half_term_today_is_in() -> None:
    period = current_period(AUTUMN_HALVES, today=date(2026, 11, 18))
    assert (period.start, period.end, period.from_terms) == (
        date(2026, 11, 2),
        date(2026, 12, 18),
        True,
    )
    assert period.label == "this half-term (2 Nov to 18 Dec 2026)"


def test_in_the_holiday_the_half_term_just_ended() -> None:
    period = current_period(AUTUMN_HALVES, today=date(2026, 10, 28))
    assert (period.start, period.end) == (date(2026, 9, 3), date(2026, 10, 23))


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 9, 10), (date(2026, 9, 3), date(2026, 10, 25))),
        (date(2026, 12, 1), (date(2026, 10, 26), date(2026, 12, 18))),
    ],
)
def test_a_whole_term_is_split_into_two_halves(today: date, expected: tuple[date, date]) -> None:
    period = current_period(WHOLE_AUTUMN_TERM, today=today)
    assert (period.start, period.end) == expected


@pytest.mark.parametrize("terms", [(), AUTUMN_HALVES])
def test_without_a_term_covering_today_the_last_six_weeks(
    terms: tuple[TermSettings, ...],
) -> None:
    period = current_period(terms, today=date(2026, 8, 20))
    assert (period.start, period.end, period.from_terms) == (
        date(2026, 7, 10),
        date(2026, 8, 20),
        False,
    )


def test_no_sessions_is_not_full_coverage() -> None:
    assert Coverage.share(0, 0) is None
    assert Coverage.share(1, 3) == 33
