"""Time as the emulator sees it: wall time plus an offset tests can move forward.

Everything that expires in Discord reads this clock: interaction tokens (15 minutes),
the 3-second window to acknowledge an interaction, signed CDN URLs, the nonce
de-duplication window and rate-limit buckets. ``advance(seconds)`` jumps all of them
at once without sleeping.
"""

from __future__ import annotations

import datetime
import itertools
import time

DISCORD_EPOCH_MS = 1_420_070_400_000


class Clock:
    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        """Seconds since the Unix epoch, emulated."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move emulated time forward (tokens and URLs expire; nothing sleeps)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds

    def iso(self, at: float | None = None) -> str:
        """ISO-8601 timestamp as Discord writes it (``2024-01-01T00:00:00.000000+00:00``)."""
        moment = self.now() if at is None else at
        return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat()


class Snowflakes:
    """Discord-shaped ids: milliseconds since 2015 in the top bits, a counter below."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._counter = itertools.count(1)

    def next(self) -> int:
        ms = int(self._clock.now() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._counter) & 0x3FFFFF)
