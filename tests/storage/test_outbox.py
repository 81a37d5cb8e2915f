"""The outbox: refused events back off, park and are never dropped; a job's events stay in order."""

from __future__ import annotations

import math
import random

import pytest

from storage import jobs, outbox
from storage.config import OutboxConfig, QueueConfig
from storage.errors import DreambotError

CFG = OutboxConfig(base_seconds=2.0, max_seconds=300.0, park_after=3)


class Longest(random.Random):
    """Full jitter's upper end, so a test can read the cap."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def _job(db) -> int:
    return (await jobs.enqueue(db, kind="train", user_id=1, params={}, cfg=QueueConfig())).id


async def _fail(db, event_id: int, times: int = 1, *, at: float = 1000.0) -> outbox.Event:
    """Fail the event `times` times, each when it is due again."""
    event = None
    for _ in range(times):
        event = await outbox.mark_attempt_failed(db, event_id, "503 Service Unavailable", cfg=CFG, at=at,
                                                 rng=Longest())
        at = event.next_attempt_at
    return event


@pytest.mark.parametrize(("attempts", "park_after", "cap"), [
    (1, 8, 2.0), (2, 8, 4.0), (7, 8, 128.0), (8, 8, 300.0), (30, 8, 300.0), (10, 20, 300.0),
])
def test_retry_delay_doubles_up_to_the_maximum(attempts, park_after, cap):
    """The cap doubles from base_seconds and never exceeds max_seconds; parked events wait the maximum."""
    cfg = OutboxConfig(base_seconds=2.0, max_seconds=300.0, park_after=park_after)
    assert outbox.retry_delay(attempts, cfg, Longest()) == cap


def test_retry_delay_has_full_jitter():
    """Before parking, a delay is anywhere between 0 and its cap, so refused events don't return together."""
    rng = random.Random(0)
    cfg = OutboxConfig(base_seconds=2.0, max_seconds=300.0, park_after=8)
    delays = [outbox.retry_delay(4, cfg, rng) for _ in range(200)]
    assert 0 <= min(delays) < 2 and 14 < max(delays) <= 16


def test_parked_events_are_tried_between_half_and_all_of_the_maximum():
    """A parked event is tried at the slow cadence, jittered within its second half."""
    rng = random.Random(0)
    delays = [outbox.retry_delay(5, CFG, rng) for _ in range(200)]
    assert 150 <= min(delays) and max(delays) <= 300


async def test_a_refused_event_waits_for_its_backoff(db):
    """After a failure the event is not due until next_attempt_at, then it is."""
    event_id = await outbox.post(db, kind="notice", payload={"text": "hi"}, user_id=1)
    failed = await _fail(db, event_id)
    assert (failed.attempts, failed.next_attempt_at, failed.parked) == (1, 1002.0, False)
    assert await outbox.pending(db, at=1001.9) == []
    assert [e.id for e in await outbox.pending(db, at=1002.0)] == [event_id]


async def test_an_event_is_parked_after_park_after_failures(db):
    """The park_after-th failure parks the event: it stays pending and is listed."""
    event_id = await outbox.post(db, kind="notice", payload={}, user_id=1, guild_id=7)
    assert not (await _fail(db, event_id, CFG.park_after - 1)).parked
    parked = await _fail(db, event_id, at=2000.0)
    assert parked.parked_at == 2000.0 and parked.delivered_at is None
    assert [e.id for e in await outbox.list_parked(db)] == [event_id]
    assert [e.id for e in await outbox.pending(db, at=parked.next_attempt_at)] == [event_id]


async def test_an_event_is_never_dropped(db):
    """However often Discord refuses it, the event stays undelivered and keeps its first parking time."""
    event_id = await outbox.post(db, kind="images", payload={}, user_id=1)
    first_parked = (await _fail(db, event_id, CFG.park_after)).parked_at
    event = await _fail(db, event_id, 20, at=5000.0)
    assert (event.attempts, event.delivered_at, event.parked_at) == (CFG.park_after + 20, None, first_parked)


async def test_a_parked_event_is_delivered_when_discord_answers(db):
    """A parked event that goes through is marked delivered and leaves the parked list."""
    event_id = await outbox.post(db, kind="notice", payload={}, user_id=1)
    await _fail(db, event_id, CFG.park_after)
    await outbox.mark_delivered(db, event_id)
    assert await outbox.list_parked(db) == [] and await outbox.pending(db, at=math.inf) == []


async def test_a_later_event_of_the_job_waits_behind_a_refused_one(db):
    """A job's second event is not due while its first waits; other jobs' and job-less events pass."""
    job, other = await _job(db), await _job(db)
    first = await outbox.post(db, kind="progress", payload={}, job_id=job)
    second = await outbox.post(db, kind="failed", payload={}, job_id=job)
    passing = await outbox.post(db, kind="failed", payload={}, job_id=other)
    loose = await outbox.post(db, kind="notice", payload={}, user_id=1)
    failed = await _fail(db, first)
    assert [e.id for e in await outbox.pending(db, at=1001.0)] == [passing, loose]
    assert [e.id for e in await outbox.pending(db, at=failed.next_attempt_at)] == [first, second, passing, loose]


async def test_retry_makes_a_parked_event_due_now_and_unparks_it(db):
    """`retry` of one event clears its parking and its wait; its attempts are kept."""
    event_id = await outbox.post(db, kind="notice", payload={}, user_id=1)
    await _fail(db, event_id, CFG.park_after)
    assert await outbox.retry(db, event_id=event_id, at=1500.0) == 1
    event = await outbox.get(db, event_id)
    assert (event.parked, event.next_attempt_at, event.attempts) == (False, 1500.0, CFG.park_after)


async def test_retry_of_a_later_event_keeps_the_job_in_order(db):
    """Retrying a job's later event alone does not let it pass the earlier one that still waits."""
    job = await _job(db)
    first = await outbox.post(db, kind="progress", payload={}, job_id=job)
    second = await outbox.post(db, kind="failed", payload={}, job_id=job)
    await _fail(db, first)
    await _fail(db, second)
    await outbox.retry(db, event_id=second, at=1000.5)
    assert await outbox.pending(db, at=1000.5) == []


async def test_retry_all_makes_every_waiting_event_due(db):
    """`retry` without an id un-parks every parked event and ends every backoff; due ones are untouched."""
    parked = await outbox.post(db, kind="notice", payload={}, user_id=1)
    backing_off = await outbox.post(db, kind="notice", payload={}, user_id=2)
    await outbox.post(db, kind="notice", payload={}, user_id=3)
    await _fail(db, parked, CFG.park_after)
    await _fail(db, backing_off)
    assert await outbox.retry(db, at=1000.0) == 2
    assert len(await outbox.pending(db, at=1000.0)) == 3 and await outbox.list_parked(db) == []


async def test_retry_of_an_unknown_or_delivered_event_is_a_clear_error(db):
    """An id that is not an undelivered event says so instead of doing nothing."""
    event_id = await outbox.post(db, kind="notice", payload={}, user_id=1)
    await outbox.mark_delivered(db, event_id)
    for unknown in (event_id, 999):
        with pytest.raises(DreambotError, match=f"no undelivered outbox event #{unknown}"):
            await outbox.retry(db, event_id=unknown)


async def test_list_parked_of_one_guild(db):
    """Moderators of a guild see only that guild's parked events."""
    ours = await outbox.post(db, kind="notice", payload={}, user_id=1, guild_id=7)
    theirs = await outbox.post(db, kind="notice", payload={}, user_id=1, guild_id=8)
    for event_id in (ours, theirs):
        await _fail(db, event_id, CFG.park_after)
    assert [e.id for e in await outbox.list_parked(db, guild_id=7)] == [ours]
    assert [e.id for e in await outbox.list_parked(db)] == [ours, theirs]


async def test_a_failure_of_a_forgotten_event_is_ignored(db):
    """An event deleted meanwhile (its user forgotten) gives None, not an error."""
    assert await outbox.mark_attempt_failed(db, 12345, "gone", cfg=CFG) is None


async def test_stored_errors_lose_interaction_tokens(db):
    """An error quoting a webhook URL keeps the ids but not the interaction token."""
    event_id = await outbox.post(db, kind="images", payload={}, user_id=1)
    await outbox.mark_attempt_failed(db, event_id, "404 on PATCH /webhooks/123/aW50ZXJhY3Rpb246abc/messages/4",
                                     cfg=CFG)
    event = await outbox.get(db, event_id)
    assert event.last_error == "404 on PATCH /webhooks/123/<token>/messages/4"
