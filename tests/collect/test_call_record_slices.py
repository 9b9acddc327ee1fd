"""How a frugal poll cuts the call-record window into slices of about a page each."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from remote_guard.collect.collector import call_record_slices

START = datetime(2026, 11, 17, 4, 30, 15, 250_000, tzinfo=UTC)  # as now - lookback gives it
END = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)


def _at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 18, hour, minute, tzinfo=UTC)


def _covers_without_gaps(slices: list[tuple[datetime, datetime]]) -> bool:
    return (
        slices[0][0] == START
        and slices[-1][1] == END
        and all(a[1] == b[0] for a, b in itertools.pairwise(slices))
        and all(low < high for low, high in slices)
    )


def test_before_any_listing_the_window_is_cut_every_six_hours() -> None:
    slices = call_record_slices(START, END, None, per_slice=40)
    assert _covers_without_gaps(slices)
    assert len(slices) == 6  # from 04:30:15 on the 17th: 04:00, 10:00, ... on the clock
    assert slices[1] == (
        datetime(2026, 11, 17, 10, tzinfo=UTC),
        datetime(2026, 11, 17, 16, tzinfo=UTC),
    )


def test_a_listing_that_found_nothing_makes_one_slice() -> None:
    """A school with no calls lately lists the whole window at once."""
    assert call_record_slices(START, END, [], per_slice=40) == [(START, END)]


def test_quiet_hours_merge_and_busy_hours_split() -> None:
    """Ten records overnight make one slice with the quiet hours around them; 100 records in
    the 10 o'clock hour make three slices of twenty minutes."""
    known = sorted(
        [_at(2, 10 + n) for n in range(10)]
        + [_at(10) + timedelta(seconds=30 * n) for n in range(100)]
    )
    slices = call_record_slices(START, END, known, per_slice=40)
    assert _covers_without_gaps(slices)
    assert (_at(10), _at(10, 20)) in slices
    assert (_at(10, 20), _at(10, 40)) in slices
    assert (_at(10, 40), _at(11)) in slices
    assert len(slices) == 5  # before 10:00, three slices of the busy hour, after 11:00


def test_an_empty_window_has_no_slices() -> None:
    assert call_record_slices(END, END, None, per_slice=40) == []
