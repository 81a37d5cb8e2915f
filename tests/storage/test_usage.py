"""storage.usage: flagged and withheld images summed per user and subject; the bot's count once per event."""

from __future__ import annotations

from storage import jobs, usage
from storage.config import QueueConfig


async def _job(db, *, user_id: int = 1, subject_id: int | None = None) -> jobs.Job:
    return await jobs.enqueue(db, kind="generate", user_id=user_id, params={"n": 2}, cfg=QueueConfig(), guild_id=9,
                              channel_id=5, subject_id=subject_id)


async def test_totals_sum_flagged_and_withheld_per_user(db):
    """Each user's row sums the images the checker flagged and those nobody was shown, within the guild."""
    await usage.record(db, user_id=1, kind="generate", images=4, guild_id=9, job_id=1, flagged=2, withheld=1)
    await usage.record(db, user_id=1, kind="generate", images=2, guild_id=9, job_id=2)
    await usage.record(db, user_id=2, kind="generate", images=1, guild_id=9, job_id=3, flagged=1)
    await usage.record(db, user_id=1, kind="generate", images=9, guild_id=8, job_id=4, flagged=9, withheld=9)
    found = {t.key: (t.jobs, t.images, t.flagged, t.withheld) for t in await usage.totals(db, by="user_id",
                                                                                           guild_id=9)}
    assert found == {1: (2, 6, 2, 1), 2: (1, 1, 1, 0)}


async def test_withheld_at_delivery_counts_for_the_jobs_user_and_subject(db):
    """The bot's held-back images are counted for the job's owner and subject, without adding a job."""
    job = await _job(db, user_id=3, subject_id=None)
    await usage.record(db, user_id=3, kind="generate", images=2, guild_id=9, job_id=job.id, flagged=2)
    await usage.record_withheld(db, event_id=40, job_id=job.id, count=2)
    (total,) = await usage.totals(db, by="user_id", user_id=3)
    assert (total.jobs, total.images, total.flagged, total.withheld) == (1, 2, 2, 2)


async def test_a_retried_delivery_counts_once(db):
    """Recording the same event's held-back images again (a delivery retried after an error) adds nothing."""
    job = await _job(db)
    for _ in range(3):
        await usage.record_withheld(db, event_id=41, job_id=job.id, count=1)
    await usage.record_withheld(db, event_id=42, job_id=job.id, count=1)
    (total,) = await usage.totals(db, by="user_id", user_id=1)
    assert total.withheld == 2


async def test_nothing_is_counted_for_a_job_that_is_gone(db):
    """A forgotten user's job no longer exists: the bot's count writes no row for it."""
    await usage.record_withheld(db, event_id=43, job_id=999, count=2)
    await usage.record_withheld(db, event_id=44, job_id=None, count=2)
    assert await usage.totals(db, by="user_id") == []
