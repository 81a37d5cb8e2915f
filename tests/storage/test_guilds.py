"""storage.guilds: what a guild does with images the safety checker flagged (Policy.nsfw, nsfw_mode)."""

from __future__ import annotations

import pytest

from storage import audit, guilds, migrate
from storage import db as database
from storage.errors import DreambotError


async def test_flagged_images_are_blocked_by_default(db):
    """A guild that never chose, and a request outside any guild, get "block"."""
    assert (await guilds.policy(db, 5, default_review=False)).nsfw == "block"
    assert await guilds.nsfw_mode(db, 5) == "block"
    assert await guilds.nsfw_mode(db, None) == "block"


async def test_other_settings_leave_the_nsfw_mode_alone(db):
    """A guild that changed only its quotas still blocks flagged images."""
    await guilds.set_policy(db, guild_id=5, by=9, max_images_per_day=3)
    assert await guilds.nsfw_mode(db, 5) == "block"


async def test_spoiler_mode_is_set_and_audited(db):
    """set_policy(nsfw=...) changes the mode for that guild only, and the audit log says who did it."""
    await guilds.set_policy(db, guild_id=5, by=9, nsfw="spoiler-in-age-restricted")
    assert (await guilds.policy(db, 5, default_review=False)).nsfw == "spoiler-in-age-restricted"
    assert await guilds.nsfw_mode(db, 5) == "spoiler-in-age-restricted"
    assert await guilds.nsfw_mode(db, 6) == "block"
    (entry,) = await audit.recent(db, guild_id=5)
    assert (entry.action, entry.actor_id, entry.detail) == ("guild.policy_changed", 9,
                                                            {"nsfw": "spoiler-in-age-restricted"})


@pytest.mark.parametrize("value", ["allow", "", "BLOCK", None])
async def test_an_unknown_mode_is_refused_with_the_choices(db, value):
    """Anything but the two modes is refused, naming both, and nothing changes."""
    await guilds.set_policy(db, guild_id=5, by=9, nsfw="spoiler-in-age-restricted")
    with pytest.raises(DreambotError, match='"block".*"spoiler-in-age-restricted"'):
        await guilds.set_policy(db, guild_id=5, by=9, nsfw=value, max_images_per_day=1)
    policy = await guilds.policy(db, 5, default_review=False)
    assert (policy.nsfw, policy.max_images_per_day) == ("spoiler-in-age-restricted", None)


async def test_a_policy_from_before_0005_reads_as_block(tmp_path):
    """A guild policy row written before the safety migration blocks flagged images after it."""
    path = tmp_path / "old.sqlite3"
    async with database.connect(path, run_migrations=False) as db:
        await migrate.migrate(db, upto="0004_outbox_parking")
        await db.execute("INSERT INTO guild_policy (guild_id, review_required, updated_at) VALUES (5, 1, 0)")
    async with database.connect(path) as db:
        assert "0005_safety" in await migrate.applied(db)
        policy = await guilds.policy(db, 5, default_review=False)
        assert (policy.review_required, policy.nsfw) == (True, "block")
