"""Allowed time windows: when a migration (or any throttled job) may run.

A window is written ``[DAYS] [HH:MM-HH:MM]``: ``Mon-Fri 20:00-06:00`` (weeknights; a window
that ends before it starts runs past midnight and belongs to the day it starts on),
``Sat,Sun`` (whole days), ``22:00-05:30`` (every night). Times are the server's local time,
as the department's peak hours are. Several windows add up; no window means always.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from openpacs.domain.errors import InvalidQuery

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def _minute(hours: str, minutes: str, text: str) -> int:
    h, m = int(hours), int(minutes)
    if h > 24 or m > 59 or (h == 24 and m):
        raise InvalidQuery(f"{text!r}: a time is HH:MM between 00:00 and 24:00")
    return h * 60 + m


def _days(spec: str, text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in spec.lower().split(","):
        ends = part.split("-")
        try:
            numbers = [DAYS.index(e.strip()[:3]) for e in ends if e.strip()]
        except ValueError:
            raise InvalidQuery(f"{text!r}: days are Mon, Tue, Wed, Thu, Fri, Sat, Sun (Mon-Fri, Sat,Sun)") from None
        if len(numbers) == 1 and len(ends) == 1:
            days.add(numbers[0])
        elif len(numbers) == 2:
            first, last = numbers
            day = first
            days.add(day)
            while day != last:
                day = (day + 1) % 7
                days.add(day)
        else:
            raise InvalidQuery(f"{text!r}: a day range is written Mon-Fri")
    return frozenset(days)


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and minutes of the day [start, end); end <= start runs past midnight."""

    text: str
    days: frozenset[int]
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Window:
        words = text.split()
        if not words or len(words) > 2:
            raise InvalidQuery(f"{text!r}: a window is [DAYS] [HH:MM-HH:MM], e.g. 'Mon-Fri 20:00-06:00'")
        days: frozenset[int] = frozenset(range(7))
        start, end = 0, 24 * 60
        for word in words:
            match = _TIME.match(word)
            if match:
                start = _minute(match[1], match[2], text)
                end = _minute(match[3], match[4], text)
                if start == end:
                    raise InvalidQuery(f"{text!r}: a window cannot start when it ends")
            else:
                days = _days(word, text)
        return cls(text, days, start, end)

    def _spans(self, day: datetime) -> list[tuple[datetime, datetime]]:
        """The (start, end) this window opens for on the day starting at *day* (midnight)."""
        if day.weekday() not in self.days:
            return []
        begin = day + timedelta(minutes=self.start)
        end = day + timedelta(minutes=self.end if self.end > self.start else self.end + 24 * 60)
        return [(begin, end)]

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Windows:
    """The union of the allowed windows (empty: always allowed)."""

    windows: tuple[Window, ...] = ()

    @classmethod
    def parse(cls, texts: list[str] | tuple[str, ...]) -> Windows:
        return cls(tuple(Window.parse(t) for t in texts if t.strip()))

    def _spans_around(self, when: datetime) -> list[tuple[datetime, datetime]]:
        midnight = datetime.combine(when.date(), time(0), tzinfo=when.tzinfo)
        spans = []
        for offset in range(-1, 9):
            day = midnight + timedelta(days=offset)
            for window in self.windows:
                spans.extend(window._spans(day))
        return sorted(spans)

    def allows(self, when: datetime) -> bool:
        """True when *when* (local time) lies in a window, or when there are none."""
        if not self.windows:
            return True
        return any(start <= when < end for start, end in self._spans_around(when))

    def next_open(self, when: datetime) -> datetime | None:
        """When the next window opens after *when* (local time); None when there are none."""
        starts = [start for start, _ in self._spans_around(when) if start > when]
        return min(starts) if starts else None

    def closes(self, when: datetime) -> datetime | None:
        """When the window open at *when* closes (the latest end of the spans that hold it)."""
        ends = [end for start, end in self._spans_around(when) if start <= when < end]
        return max(ends) if ends else None

    def texts(self) -> list[str]:
        return [w.text for w in self.windows]
