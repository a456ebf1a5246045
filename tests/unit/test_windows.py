"""Allowed time windows of migrations: parsing, membership, when the next one opens."""

from __future__ import annotations

from datetime import datetime

import pytest

from openpacs.domain.errors import InvalidQuery
from openpacs.domain.windows import Window, Windows

# 2026-11-30 is a Monday
MON_NOON = datetime(2026, 11, 30, 12, 0)


def test_weeknights_run_past_midnight_and_belong_to_the_day_they_start() -> None:
    nights = Windows.parse(["Mon-Fri 20:00-06:00"])
    assert not nights.allows(MON_NOON)
    assert nights.allows(datetime(2026, 11, 30, 20, 0))
    assert nights.allows(datetime(2026, 12, 1, 5, 59))  # Monday night, on Tuesday morning
    assert not nights.allows(datetime(2026, 12, 1, 6, 0))
    assert nights.allows(datetime(2026, 12, 5, 3, 0))  # Friday night, on Saturday morning
    assert not nights.allows(datetime(2026, 12, 6, 3, 0))  # Saturday night is not a weeknight
    assert not nights.allows(datetime(2026, 11, 30, 3, 0))  # Sunday night: not a weeknight either
    assert nights.next_open(MON_NOON) == datetime(2026, 11, 30, 20, 0)
    assert nights.closes(datetime(2026, 11, 30, 23, 0)) == datetime(2026, 12, 1, 6, 0)


def test_whole_days_and_several_windows_add_up() -> None:
    off_peak = Windows.parse(["Sat,Sun", "22:00-05:30"])
    assert off_peak.allows(datetime(2026, 12, 5, 12, 0))  # Saturday noon
    assert off_peak.allows(datetime(2026, 12, 1, 23, 0))  # a Tuesday night
    assert not off_peak.allows(MON_NOON)
    assert off_peak.next_open(MON_NOON) == datetime(2026, 11, 30, 22, 0)
    assert off_peak.next_open(datetime(2026, 12, 4, 23, 0)) == datetime(2026, 12, 5, 0, 0)


def test_no_window_means_always_and_a_day_range_may_wrap_the_week() -> None:
    assert Windows.parse([]).allows(MON_NOON)
    assert Windows.parse([]).next_open(MON_NOON) is None
    weekend = Window.parse("Sat-Mon")
    assert weekend.days == frozenset({5, 6, 0})
    assert Window.parse("Tue 00:00-24:00").days == frozenset({1})


def test_times_are_kept_with_their_zone() -> None:
    from datetime import UTC

    aware = datetime(2026, 11, 30, 21, 0, tzinfo=UTC)
    assert Windows.parse(["20:00-21:30"]).allows(aware)
    assert Windows.parse(["20:00-21:30"]).next_open(aware) == datetime(2026, 12, 1, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Monday-Fry", "days are"),
        ("25:00-06:00", "a time is"),
        ("20:00-20:00", "cannot start when it ends"),
        ("Mon 20:00-06:00 extra", "a window is"),
        ("Mon-Tue-Wed", "day range"),
        ("", "a window is"),
    ],
)
def test_bad_windows_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidQuery, match=why):
        Window.parse(text)
