"""Per-user cooldowns between commands, in memory (a restart forgets them, which is harmless)."""

from __future__ import annotations

import time
from collections.abc import Callable


class Cooldowns:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[tuple[str, int], float] = {}

    def remaining(self, command: str, user_id: int, seconds: float) -> float:
        """Seconds until the user may run the command again; 0 when they may now."""
        last = self._last.get((command, user_id))
        if last is None or seconds <= 0:
            return 0.0
        return max(0.0, last + seconds - self._clock())

    def start(self, command: str, user_id: int) -> None:
        """The user's request was accepted: the cooldown runs from now."""
        self._last[(command, user_id)] = self._clock()
