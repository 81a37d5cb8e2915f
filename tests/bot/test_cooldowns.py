"""Per-user cooldowns."""

from __future__ import annotations

from bot.cooldowns import Cooldowns


def test_cooldown_runs_from_acceptance():
    """Only an accepted request starts the cooldown; it runs out after its length."""
    now = [100.0]
    cd = Cooldowns(clock=lambda: now[0])
    assert cd.remaining("imagine", 1, 10) == 0
    cd.start("imagine", 1)
    now[0] += 4
    assert (cd.remaining("imagine", 1, 10), cd.remaining("imagine", 2, 10)) == (6, 0)
