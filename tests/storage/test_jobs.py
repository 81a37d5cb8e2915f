"""The job queue in one process: ordering, idempotency, limits, leases, fencing, retries, cancellation.

Cancelling and retrying go through storage.lifecycle, as the bot's /cancel and the operator's retry do.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from storage import db as database
from storage import jobs, lifecycle, subjects
from storage.errors import JobNotFound, LeaseLost, QueueFull, StopRequested, WrongJobState
from tests.helpers import consented


async def _enqueue(db, queue_cfg, **kw):
    kw.setdefault("kind", "train")
    kw.setdefault("user_id", 1)
    kw.setdefault("params", {})
    kw.setdefault("at", 0.0)  # tests pass explicit clock times from 100 s on
    return await jobs.enqueue(db, cfg=queue_cfg, **kw)


async def test_claim_returns_none_on_empty_queue(db):
    """An empty queue gives no job."""
    assert await jobs.claim(db, worker_id="w", lease_seconds=10) is None


async def test_generation_is_claimed_before_training(db, queue_cfg):
    """Generate jobs go first even when queued after a train job."""
    train = await _enqueue(db, queue_cfg, kind="train", user_id=1)
    gen = await _enqueue(db, queue_cfg, kind="generate", user_id=2)
    assert (await jobs.claim(db, worker_id="w", lease_seconds=10)).id == gen.id
    assert (await jobs.claim(db, worker_id="w", lease_seconds=10)).id == train.id


async def test_same_priority_jobs_run_in_arrival_order(db, queue_cfg):
    """Within one priority, the oldest job is claimed first."""
    first = await _enqueue(db, queue_cfg, user_id=1)
    await _enqueue(db, queue_cfg, user_id=2)
    assert (await jobs.claim(db, worker_id="w", lease_seconds=10)).id == first.id


async def test_repeated_idempotency_key_enqueues_nothing_new(db, queue_cfg):
    """A request repeated with the same key returns the first job."""
    a = await _enqueue(db, queue_cfg, idempotency_key="interaction-42")
    b = await _enqueue(db, queue_cfg, idempotency_key="interaction-42")
    assert a.id == b.id
    assert len(await jobs.list_jobs(db)) == 1


async def test_per_user_limit_refuses_with_advice(db, queue_cfg):
    """A user over the queued-job limit is told to wait or cancel; others are unaffected."""
    for _ in range(queue_cfg.max_queued_per_user):
        await _enqueue(db, queue_cfg, user_id=7)
    with pytest.raises(QueueFull, match="/cancel"):
        await _enqueue(db, queue_cfg, user_id=7)
    await _enqueue(db, queue_cfg, user_id=8)


async def test_queue_position_counts_jobs_ahead(db, queue_cfg):
    """Positions follow claim order: priority, then arrival."""
    t1 = await _enqueue(db, queue_cfg, user_id=1)
    t2 = await _enqueue(db, queue_cfg, user_id=2)
    g = await _enqueue(db, queue_cfg, kind="generate", user_id=3)
    assert [await jobs.queue_position(db, j.id) for j in (g, t1, t2)] == [1, 2, 3]


async def test_queue_position_is_none_once_running(db, queue_cfg):
    """A claimed job has no queue position."""
    job = await _enqueue(db, queue_cfg)
    await jobs.claim(db, worker_id="w", lease_seconds=10)
    assert await jobs.queue_position(db, job.id) is None


async def test_statuses_show_the_fleet_wide_queue_in_one_query(db, db_location, queue_cfg):
    """/status's view: positions as queue_position counts them, including jobs other processes queued and
    claimed, read in a single statement."""
    mine = [await _enqueue(db, queue_cfg, user_id=1) for _ in range(3)]
    async with database.connect(db_location) as elsewhere:  # another bot or worker process
        await _enqueue(elsewhere, queue_cfg, kind="generate", user_id=2)
        await jobs.claim(elsewhere, worker_id="w2", lease_seconds=10, kinds=("train",))
    calls = []
    real = db.execute_fetchall

    async def counted(*args, **kw):
        calls.append(args[0])
        return await real(*args, **kw)
    db.execute_fetchall = counted
    try:
        shown = await jobs.statuses(db, user_id=1)
    finally:
        del db.execute_fetchall
    assert len(calls) == 1
    assert [(s.job.id, s.job.state, s.position) for s in shown] == [
        (mine[2].id, "queued", 3), (mine[1].id, "queued", 2), (mine[0].id, "running", None)]
    assert [s.position for s in shown] == [await jobs.queue_position(db, j.id) for j in reversed(mine)]


async def test_expired_lease_is_reaped_and_reclaimed(db, queue_cfg):
    """A job whose worker went silent returns to the queue and can be claimed again."""
    job = await _enqueue(db, queue_cfg)
    first = await jobs.claim(db, worker_id="a", lease_seconds=5, at=100.0)
    assert await jobs.reap_expired(db, at=104.0) == []
    assert [j.id for j in await jobs.reap_expired(db, at=106.0)] == [job.id]
    second = await jobs.claim(db, worker_id="b", lease_seconds=5, at=106.0)
    assert second.id == job.id and second.attempts == 2 and second.lease_token != first.lease_token


async def test_heartbeat_keeps_lease_alive(db, queue_cfg):
    """A renewed lease is not reaped at its original expiry."""
    await _enqueue(db, queue_cfg)
    job = await jobs.claim(db, worker_id="a", lease_seconds=5, at=100.0)
    await jobs.heartbeat(db, job_id=job.id, lease_token=job.lease_token, lease_seconds=5, at=104.0)
    assert await jobs.reap_expired(db, at=106.0) == []


@pytest.mark.parametrize("write", ["heartbeat", "progress", "complete", "fail"])
async def test_stale_worker_is_fenced_off(db, queue_cfg, write):
    """Once a lease is taken over, every write by the old holder raises LeaseLost and changes nothing."""
    await _enqueue(db, queue_cfg)
    old = await jobs.claim(db, worker_id="old", lease_seconds=5, at=100.0)
    await jobs.reap_expired(db, at=200.0)
    new = await jobs.claim(db, worker_id="new", lease_seconds=5, at=200.0)
    calls = {
        "heartbeat": lambda: jobs.heartbeat(db, job_id=old.id, lease_token=old.lease_token, lease_seconds=5),
        "progress": lambda: jobs.set_progress(db, job_id=old.id, lease_token=old.lease_token, step=9, total=9),
        "complete": lambda: jobs.complete(db, job_id=old.id, lease_token=old.lease_token, result={"stale": 1}),
        "fail": lambda: jobs.fail(db, job_id=old.id, lease_token=old.lease_token, error="x", retryable=False,
                                  cfg=queue_cfg),
    }
    with pytest.raises(LeaseLost):
        await calls[write]()
    now = await jobs.get(db, new.id)
    assert (now.state, now.lease_owner, now.result, now.progress_step) == ("running", "new", None, 0)


async def test_retryable_failure_backs_off_then_dies(db, queue_cfg):
    """Retryable errors requeue with growing delays until attempts run out, then the job is dead."""
    await _enqueue(db, queue_cfg)  # train_max_attempts = 3
    t, delays, rng = 1000.0, [], random.Random(0)
    for _ in range(3):
        job = await jobs.claim(db, worker_id="w", lease_seconds=5, at=t)
        assert job is not None
        job = await jobs.fail(db, job_id=job.id, lease_token=job.lease_token, error=f"boom {job.attempts}",
                              retryable=True, cfg=queue_cfg, at=t, rng=rng)
        if job.state == "queued":
            delays.append(job.run_after - t)
            assert await jobs.claim(db, worker_id="w", lease_seconds=5, at=t) is None  # not before its time
            t = job.run_after
    assert job.state == "dead" and job.error == "boom 3"
    assert len(delays) == 2 and all(0 <= d <= queue_cfg.backoff_max_seconds for d in delays)


def test_backoff_caps_grow_exponentially(queue_cfg):
    """The jitter range doubles per attempt up to the maximum."""
    class Top(random.Random):
        def uniform(self, a, b):
            return b
    assert [jobs.backoff_delay(n, queue_cfg, Top()) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


async def test_input_error_fails_without_retry(db, queue_cfg):
    """A non-retryable failure is final on the first attempt."""
    await _enqueue(db, queue_cfg)
    job = await jobs.claim(db, worker_id="w", lease_seconds=5)
    job = await jobs.fail(db, job_id=job.id, lease_token=job.lease_token, error="photo unreadable",
                          retryable=False, cfg=queue_cfg)
    assert (job.state, job.attempts) == ("failed", 1)


async def test_cancel_queued_job_is_immediate(db, queue_cfg, tmp_path):
    """A queued job is cancelled at once and never claimed."""
    job = await _enqueue(db, queue_cfg)
    assert (await lifecycle.cancel_job(db, job_id=job.id, data_dir=tmp_path, user_id=1)).state == "cancelled"
    assert await jobs.claim(db, worker_id="w", lease_seconds=5) is None


async def test_cancel_running_job_is_seen_at_heartbeat(db, queue_cfg, tmp_path):
    """A running job gets a flag its worker reads at the next heartbeat, then acknowledges."""
    await _enqueue(db, queue_cfg)
    job = await jobs.claim(db, worker_id="w", lease_seconds=5)
    assert (await lifecycle.cancel_job(db, job_id=job.id, data_dir=tmp_path, user_id=1)).state == "running"
    beat = await jobs.heartbeat(db, job_id=job.id, lease_token=job.lease_token, lease_seconds=5)
    assert beat.cancel_requested
    stopped = await lifecycle.job_stopped(db, job_id=job.id, lease_token=job.lease_token, data_dir=tmp_path)
    assert stopped.state == "cancelled"


async def test_cancelled_running_job_refuses_the_workers_result(db, queue_cfg, tmp_path):
    """Once its cancel is asked for, a job's fenced writes are refused, so nothing it made is kept."""
    await _enqueue(db, queue_cfg, kind="generate")
    job = await jobs.claim(db, worker_id="w", lease_seconds=5)
    await lifecycle.cancel_job(db, job_id=job.id, data_dir=tmp_path, user_id=1)
    with pytest.raises(StopRequested):
        await lifecycle.post_event(db, job_id=job.id, lease_token=job.lease_token, kind="progress", payload={})


async def test_cancelled_running_training_leaves_the_subject_cancelled(db, queue_cfg, tmp_path):
    """Stopping a running training ends its subject `cancelled` (not back to `draft`) and deletes its outputs."""
    queued = await consented(db, tmp_path, queue=queue_cfg, review=False)
    job = await jobs.claim(db, worker_id="w", lease_seconds=5)
    await lifecycle.begin_training(db, job_id=job.id, lease_token=job.lease_token)
    (tmp_path / f"jobs/{job.id}/checkpoints").mkdir(parents=True)
    await lifecycle.cancel_job(db, job_id=job.id, data_dir=tmp_path, user_id=queued.subject.owner_id)
    await lifecycle.job_stopped(db, job_id=job.id, lease_token=job.lease_token, data_dir=tmp_path)
    assert (await subjects.get(db, queued.subject.id)).state == "cancelled"
    assert not (tmp_path / f"jobs/{job.id}").exists()


async def test_cancel_checks_the_owner(db, queue_cfg, tmp_path):
    """A user cannot cancel another user's job."""
    job = await _enqueue(db, queue_cfg, user_id=1)
    with pytest.raises(JobNotFound):
        await lifecycle.cancel_job(db, job_id=job.id, data_dir=tmp_path, user_id=2)


async def test_cancel_finished_job_is_refused(db, queue_cfg, tmp_path):
    """A finished job cannot be cancelled."""
    await _enqueue(db, queue_cfg)
    job = await jobs.claim(db, worker_id="w", lease_seconds=5)
    await jobs.complete(db, job_id=job.id, lease_token=job.lease_token, result={})
    with pytest.raises(WrongJobState, match="succeeded"):
        await lifecycle.cancel_job(db, job_id=job.id, data_dir=tmp_path, user_id=1)


async def test_retry_requeues_dead_job_with_fresh_attempts(db, queue_cfg):
    """An operator retry makes a dead job claimable again."""
    await _enqueue(db, queue_cfg)
    job = await jobs.claim(db, worker_id="w", lease_seconds=5)
    await jobs.fail(db, job_id=job.id, lease_token=job.lease_token, error="x", retryable=False, cfg=queue_cfg)
    again = await lifecycle.retry_job(db, job_id=job.id)
    assert (again.state, again.attempts) == ("queued", 0)
    assert (await jobs.claim(db, worker_id="w", lease_seconds=5)).id == job.id


async def test_release_returns_job_without_spending_an_attempt(db, queue_cfg):
    """A worker shutting down hands its job back with its attempt count unchanged."""
    await _enqueue(db, queue_cfg)
    job = await jobs.claim(db, worker_id="w", lease_seconds=5)
    released = await jobs.release(db, job_id=job.id, lease_token=job.lease_token)
    assert (released.state, released.attempts) == ("queued", 0)


async def test_progress_is_readable(db, queue_cfg):
    """Progress written by the worker is what a reader sees."""
    await _enqueue(db, queue_cfg)
    job = await jobs.claim(db, worker_id="w", lease_seconds=5)
    await jobs.set_progress(db, job_id=job.id, lease_token=job.lease_token, step=40, total=800, message="training")
    seen = await jobs.get(db, job.id)
    assert (seen.progress_step, seen.progress_total, seen.progress_message) == (40, 800, "training")


async def test_reaper_finishes_cancel_of_a_dead_worker(db, queue_cfg, tmp_path):
    """A job asked to stop whose worker then died ends cancelled, not queued again."""
    await _enqueue(db, queue_cfg)
    job = await jobs.claim(db, worker_id="w", lease_seconds=5, at=100.0)
    await lifecycle.cancel_job(db, job_id=job.id, data_dir=tmp_path, user_id=1)
    (reaped,) = await lifecycle.reap(db, data_dir=tmp_path, at=200.0)
    assert reaped.state == "cancelled"


async def test_concurrent_enqueues_respect_the_user_limit(db, queue_cfg):
    """Ten simultaneous requests from one user (sharing commits) queue exactly the limit."""
    results = await asyncio.gather(*(_enqueue(db, queue_cfg, user_id=3) for _ in range(10)),
                                   return_exceptions=True)
    assert sum(isinstance(r, jobs.Job) for r in results) == queue_cfg.max_queued_per_user
    assert all(isinstance(r, (jobs.Job, QueueFull)) for r in results)


async def test_concurrent_enqueues_get_distinct_durable_jobs(db, queue_cfg, db_location):
    """Simultaneous requests from many users each get their own job, visible to a new connection."""
    made = await asyncio.gather(*(_enqueue(db, queue_cfg, user_id=u) for u in range(40)))
    assert len({j.id for j in made}) == 40
    async with database.connect(db_location) as other:
        assert len(await jobs.list_jobs(other, limit=100)) == 40


@pytest.mark.parametrize("db_location", ["postgresql"], indirect=True)
async def test_an_idle_worker_wakes_as_soon_as_a_job_is_queued_anywhere(db, db_location, queue_cfg):
    """On PostgreSQL an idle worker doesn't wait out its poll interval: an enqueue from another process
    (LISTEN/NOTIFY) wakes it at once."""
    waiting = asyncio.create_task(database.wait_for_jobs(db, 60))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    async with database.connect(db_location) as bot:
        started = asyncio.get_running_loop().time()
        await _enqueue(bot, queue_cfg, user_id=5)
    await asyncio.wait_for(waiting, 10)
    assert asyncio.get_running_loop().time() - started < 10
    assert (await jobs.claim(db, worker_id="w", lease_seconds=10)).user_id == 5


async def test_a_claim_never_lands_inside_a_lifecycle_change(db, db_location, queue_cfg):
    """A multi-statement change on one connection has the write turn to itself: a worker's claim on another
    connection waits for it and sees all of it, never half."""
    first = await _enqueue(db, queue_cfg, user_id=1)
    second = await _enqueue(db, queue_cfg, user_id=2)
    async with database.connect(db_location) as worker:
        async def change():  # demote the first job, then promote the second: one change
            async with database.transaction(db):
                await db.execute("UPDATE jobs SET priority = -1 WHERE id = ?", (first.id,))
                await asyncio.sleep(0.5)
                await db.execute("UPDATE jobs SET priority = 5 WHERE id = ?", (second.id,))
        changing = asyncio.create_task(change())
        await asyncio.sleep(0.1)
        claimed = await jobs.claim(worker, worker_id="w", lease_seconds=10)
        await changing
    # A claim inside the change would skip the locked first job and take the second still at priority 0.
    assert (claimed.id, claimed.priority) == (second.id, 5)


@pytest.mark.parametrize("db_location", ["postgresql"], indirect=True)
async def test_the_queue_statements_are_prepared_once_per_connection(db, queue_cfg):
    """On PostgreSQL a worker's claim and heartbeat are parsed and planned once per connection, then executed
    with their values; results are the same as the first, unprepared run's."""
    made = [await _enqueue(db, queue_cfg, user_id=u) for u in (1, 2, 3)]
    claimed = [await jobs.claim(db, worker_id="w", lease_seconds=10) for _ in made]
    assert [j.id for j in claimed] == [j.id for j in made]
    beats = [await jobs.heartbeat(db, job_id=j.id, lease_token=j.lease_token, lease_seconds=10) for j in claimed]
    assert all(not b.cancel_requested for b in beats)
    prepared = await database.fetch_all(db, "SELECT statement FROM pg_prepared_statements WHERE name LIKE 'dreambot_q%'")
    assert sorted(r["statement"].split()[3] for r in prepared) == ["UPDATE", "UPDATE"]  # PREPARE name AS ...
    with pytest.raises(LeaseLost):  # a prepared fenced statement still fences
        await jobs.heartbeat(db, job_id=claimed[0].id, lease_token="not-the-token", lease_seconds=10)
