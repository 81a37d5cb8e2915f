"""storage.lifecycle, one regression test per failure the lifecycle issue found (numbers are the issue's)."""

from __future__ import annotations

import asyncio
import time

import pytest

from storage import artifacts, consent, guilds, jobs, lifecycle, outbox, retention, subjects, usage
from storage import db as database
from storage.config import QueueConfig, RetentionConfig
from storage.errors import (
    Banned,
    ConsentError,
    CooldownActive,
    LeaseLost,
    PromptRefused,
    QuotaReached,
    StopRequested,
    SubjectError,
)
from tests.helpers import consented, draft, photos, trained

QUEUE = QueueConfig(backoff_base_seconds=0.0, backoff_max_seconds=0.0)


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


async def _claim(db, kinds=("train", "generate")):
    job = await jobs.claim(db, worker_id="w", lease_seconds=60, kinds=kinds)
    assert job is not None
    return job


def _write(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


async def _running_training(db, data, **kw):
    queued = await consented(db, data, review=False, queue=QUEUE, **kw)
    job = await _claim(db, ("train",))
    await lifecycle.begin_training(db, job_id=job.id, lease_token=job.lease_token)
    return queued.subject, job


# 1. Cancel and revoke during training end the subject in its own state; the sweep goes on.

async def test_cancel_during_training_ends_cancelled_and_the_sweep_still_runs(db, data):
    """#1: the subject ends `cancelled` (not a draft with consents), and other users' drafts still expire."""
    subject, job = await _running_training(db, data)
    stale = await draft(db, data, owner_id=2, name="old")
    await lifecycle.cancel_job(db, job_id=job.id, user_id=subject.owner_id, data_dir=data)
    await lifecycle.job_stopped(db, job_id=job.id, lease_token=job.lease_token, data_dir=data)
    assert (await subjects.get(db, subject.id)).state == "cancelled"
    assert await lifecycle.expire_drafts(db, data_dir=data, max_age=0) == 1
    with pytest.raises(SubjectError):
        await subjects.get(db, stale.id)
    report = await retention.sweep(db, data_dir=data, cfg=RetentionConfig(), at=time.time())
    assert report.errors == 0


async def test_revoke_during_training_stays_revoked(db, data):
    """#1: a moderator's revoke during training is not undone when the worker stops."""
    subject, job = await _running_training(db, data)
    await lifecycle.revoke(db, subject_id=subject.id, guild_id=9, moderator_id=7, reason="x", data_dir=data)
    assert await lifecycle.stop_reason(db, job_id=job.id, lease_token=job.lease_token) == "cancel"
    await lifecycle.job_stopped(db, job_id=job.id, lease_token=job.lease_token, data_dir=data)
    assert (await subjects.get(db, subject.id)).state == "revoked"


# 2. /forget during work leaves nothing, and no usage row is written afterwards.

async def test_forget_during_training_leaves_no_file_and_no_usage(db, data):
    """#2: the worker's next write is refused; what it wrote after the forget is deleted; no usage row."""
    subject, job = await _running_training(db, data)
    await lifecycle.forget_user(db, user_id=subject.owner_id, data_dir=data)
    ckpt = _write(data / f"jobs/{job.id}/checkpoints/step-1/adapter/w.safetensors")
    with pytest.raises(LeaseLost):
        await lifecycle.record_artifact(db, job_id=job.id, lease_token=job.lease_token, kind="checkpoint",
                                        path=f"jobs/{job.id}/checkpoints/step-1", data_dir=data)
    with pytest.raises(LeaseLost):
        await lifecycle.fail_job(db, job_id=job.id, lease_token=job.lease_token, error="x", retryable=True,
                                 queue=QUEUE, gpu_seconds=5.0)
    assert not await lifecycle.job_exists(db, job.id)
    _write(data / f"subjects/{subject.id}/job-{job.id}-adapter/pytorch_lora_weights.safetensors")
    lifecycle.remove_files(data, await lifecycle.abandoned_paths(db, job))  # what the worker does then
    assert not ckpt.exists() and not (data / f"subjects/{subject.id}").exists()
    assert await usage.totals(db, by="user_id", user_id=subject.owner_id) == []
    assert not list((data / "blobs").rglob("*.jpg"))


# 3. Generation stops for a cancel or a revoke; nothing is delivered.

@pytest.mark.parametrize("how", ["cancel", "revoke"])
async def test_generation_after_cancel_or_revoke_delivers_nothing(db, data, how):
    """#3: the finished images are refused and deleted; no `images` event is ever posted."""
    subject = await trained(db, data, queue=QUEUE)
    queued = await lifecycle.queue_images(db, lifecycle.ImageRequest(user_id=1, guild_id=9, channel_id=5,
                                                                     prompt="rex in space", count=2), queue=QUEUE)
    job = await _claim(db, ("generate",))
    if how == "cancel":
        await lifecycle.cancel_job(db, job_id=queued.job.id, user_id=1, data_dir=data)
    else:
        await lifecycle.revoke(db, subject_id=subject.id, guild_id=9, moderator_id=7, reason="x", data_dir=data)
    paths = [f"jobs/{job.id}/images/{i}.png" for i in range(2)]
    for p in [*paths, f"jobs/{job.id}/grid.png"]:
        _write(data / p)
    with pytest.raises(StopRequested):
        await lifecycle.finish_generation(db, job_id=job.id, lease_token=job.lease_token, image_paths=paths,
                                          grid_path=f"jobs/{job.id}/grid.png", seeds=[1, 2], prompt="p",
                                          data_dir=data, gpu_seconds=1.0)
    await lifecycle.job_stopped(db, job_id=job.id, lease_token=job.lease_token, data_dir=data)
    kinds = [e.kind for e in await outbox.pending(db, limit=100) if e.job_id == job.id]
    assert "images" not in kinds and kinds[-1] == "cancelled"
    assert not (data / f"jobs/{job.id}").exists()


# 5. and 6. Limits are checked in the transaction that writes.

async def test_reroll_and_vary_count_toward_the_daily_images(db, data):
    """#5: with 3 images a day, /imagine of 2 then a re-roll of 2 is refused."""
    await trained(db, data, queue=QUEUE)
    await guilds.set_policy(db, guild_id=9, by=7, max_images_per_day=3)
    first = await lifecycle.queue_images(db, lifecycle.ImageRequest(user_id=1, guild_id=9, channel_id=5,
                                                                    prompt="rex", count=2), queue=QUEUE)
    for action in ("reroll", "vary"):
        with pytest.raises(QuotaReached):
            await lifecycle.repeat_images(db, job_id=first.job.id, user_id=1, action=action, channel_id=5,
                                          queue=QUEUE)


async def _concurrently(location, n, make):
    """n requests at once, each on its own connection as separate bot processes would be."""
    async def one(i):
        async with database.connect(location) as conn:
            try:
                return await make(conn, i)
            except (CooldownActive, QuotaReached, SubjectError):
                return None
    return [r for r in await asyncio.gather(*(one(i) for i in range(n))) if r is not None]


async def test_simultaneous_trains_in_a_cooldown_make_one_draft(db, data, db_location):
    """#6: four /train at once inside a 60 s cooldown make one draft."""
    limits = lifecycle.Limits(cooldown_seconds=60)
    made = await _concurrently(db_location, 4, lambda conn, i: draft(conn, data, name=f"pet {i}", limits=limits))
    assert len(made) == 1


async def test_simultaneous_trains_respect_subjects_per_user(db, data, db_location):
    """#6: with max_subjects_per_user = 1, three at once make one subject."""
    await guilds.set_policy(db, guild_id=9, by=7, max_subjects_per_user=1)
    made = await _concurrently(db_location, 3, lambda conn, i: draft(conn, data, name=f"pet {i}"))
    assert len(made) == 1


async def test_simultaneous_imagines_respect_images_per_day(db, data, db_location):
    """#6: with images_per_day = 1, three /imagine at once queue one job."""
    await trained(db, data, queue=QUEUE)
    await guilds.set_policy(db, guild_id=9, by=7, max_images_per_day=1)
    request = lifecycle.ImageRequest(user_id=1, guild_id=9, channel_id=5, prompt="rex in space")
    made = await _concurrently(db_location, 3, lambda conn, i: lifecycle.queue_images(conn, request, queue=QUEUE))
    assert len(made) == 1


async def test_storage_cap_refuses_with_advice(db, data):
    """#14: photos past the per-user cap are refused, and nothing of the request is kept."""
    limits = lifecycle.Limits(user_quota_bytes=5000)
    await draft(db, data, name="a", limits=limits)
    with pytest.raises(QuotaReached, match="/forget"):
        await draft(db, data, name="b", limits=limits)
    assert [s.name for s in await subjects.list_for_owner(db, 1)] == ["a"]


# 7. Bans.

async def test_a_ban_refuses_confirm_and_stops_the_users_jobs(db, data):
    """#7: Confirm is refused, and queued and running jobs are cancelled or stopped."""
    held = await draft(db, data, name="held")
    subject, running = await _running_training(db, data, name="busy")
    await lifecycle.ban(db, guild_id=9, user_id=1, by=7, reason="spam", data_dir=data)
    with pytest.raises(Banned):
        await lifecycle.confirm(db, subject_id=held.id, user_id=1, queue=QUEUE, review_required=False)
    assert (await subjects.get(db, held.id)).state == "draft" and await consent.active(db, held.id) is None
    assert await lifecycle.stop_reason(db, job_id=running.id, lease_token=running.lease_token) == "cancel"


async def test_a_ban_anywhere_refuses_outside_a_guild(db):
    """#7: /export in a DM (no guild) is refused for a user banned in any guild."""
    await guilds.ban(db, guild_id=9, user_id=1, by=7)
    with pytest.raises(Banned):
        await lifecycle.ensure_not_banned(db, user_id=1, guild_id=None)
    await lifecycle.ensure_not_banned(db, user_id=1, guild_id=10)  # another guild's ban list is its own


# 8. The blocklist sees names, class nouns and the final prompt.

async def test_blocked_word_in_a_class_noun_is_refused_at_train(db, data):
    """#8: a class noun would reach every /imagine, so /train refuses it."""
    await guilds.block_term(db, guild_id=9, term="gore", by=7)
    with pytest.raises(PromptRefused, match="class noun"):
        await draft(db, data, class_noun="gore dog")


async def test_blocklist_applies_to_the_final_prompt(db, data):
    """#8: a subject trained before its class noun was blocked can't be used any more."""
    await trained(db, data, queue=QUEUE, class_noun="hound")
    await guilds.block_term(db, guild_id=9, term="hound", by=7)
    with pytest.raises(PromptRefused):
        await lifecycle.queue_images(db, lifecycle.ImageRequest(user_id=1, guild_id=9, channel_id=5,
                                                                prompt="rex in space"), queue=QUEUE)


# 9. A cancelled queued training.

async def test_cancelled_queued_training_frees_the_name_and_its_photos_expire(db, data):
    """#9: the subject is cancelled, the name can be trained again, retention deletes the photos."""
    queued = await consented(db, data, review=False, queue=QUEUE)
    await lifecycle.cancel_job(db, job_id=queued.job.id, user_id=1, data_dir=data)
    assert (await subjects.get(db, queued.subject.id)).state == "cancelled"
    again = await draft(db, data, name="rex")
    assert again.id != queued.subject.id
    report = await retention.sweep(db, data_dir=data, cfg=RetentionConfig(failed_job_photos_days=1),
                                   at=time.time() + 2 * 86400)
    assert report.photos == 3 and await subjects.photos(db, queued.subject.id) == []


# 10. The reaper.

async def test_a_dead_job_fails_its_subject_and_tells_the_owner(db, data):
    """#10: out of attempts with a silent worker, the subject fails and a `failed` event is posted."""
    subject, job = await _running_training(db, data)
    await db.execute("UPDATE jobs SET max_attempts = 1 WHERE id = ?", (job.id,))
    reaped = await lifecycle.reap(db, data_dir=data, at=time.time() + 120)
    assert [j.state for j in reaped] == ["dead"]
    assert (await subjects.get(db, subject.id)).state == "failed"
    assert (await outbox.pending(db, limit=100))[-1].kind == "failed"


# 13. Revoke deletes photos at once.

async def test_revoke_deletes_photos_adapters_and_grids_at_once(db, data):
    """#13: nothing of a revoked subject stays on disk: photos, adapter, kohya file."""
    subject = await trained(db, data, queue=QUEUE)
    await lifecycle.revoke(db, subject_id=subject.id, guild_id=9, moderator_id=7, reason="x", data_dir=data)
    assert await subjects.photos(db, subject.id) == [] and await artifacts.for_subject(db, subject.id) == []
    assert not list((data / "blobs").rglob("*.jpg")) and not (data / f"subjects/{subject.id}").exists()


# 15. Presets and fencing.

def test_unknown_preset_is_refused_before_consent():
    """#15: the refusal names the presets that exist."""
    with pytest.raises(SubjectError, match="balanced, quick"):
        lifecycle.check_preset("turbo", ("quick", "balanced"))
    assert lifecycle.check_preset(" Quick ", ("quick",)) == "quick"


async def test_a_worker_whose_lease_was_taken_cannot_record_or_post(db, data):
    """#15: artifacts and events are fenced by the lease token like complete and fail."""
    _, job = await _running_training(db, data)
    later = time.time() + 120
    await lifecycle.reap(db, data_dir=data, at=later)
    assert await jobs.claim(db, worker_id="other", lease_seconds=60, at=later) is not None  # another worker has it
    with pytest.raises(LeaseLost):
        await lifecycle.post_event(db, job_id=job.id, lease_token=job.lease_token, kind="progress", payload={})
    _write(data / f"jobs/{job.id}/grid.png")
    with pytest.raises(LeaseLost):
        await lifecycle.record_artifact(db, job_id=job.id, lease_token=job.lease_token, kind="grid",
                                        path=f"jobs/{job.id}/grid.png", data_dir=data)


# 16. Nothing trains without a consent row, whichever way the job reached the queue.

async def test_a_job_queued_without_consent_is_never_trained(db, data):
    """#16: a train job put in the queue by hand for a draft is refused when the worker starts it."""
    subject = await draft(db, data)
    await jobs.enqueue(db, kind="train", user_id=1, params={}, cfg=QUEUE, subject_id=subject.id)
    job = await _claim(db, ("train",))
    with pytest.raises(ConsentError):
        await lifecycle.begin_training(db, job_id=job.id, lease_token=job.lease_token)


async def test_local_training_needs_consent_and_records_the_operator(db, data):
    """#16: `dreambot train` without consent queues nothing; with it, the consent row names the operator."""
    args = dict(owner_id=0, name="mug", class_noun="mug", photos=photos(3), params={}, idempotency_key="k",
                queue=QUEUE, data_dir=data)
    with pytest.raises(ConsentError):
        await lifecycle.local_training(db, consent_given=False, **args)
    assert await jobs.list_jobs(db) == []
    subject, job = await lifecycle.local_training(db, consent_given=True, **args)
    granted = await consent.active(db, subject.id)
    assert granted is not None and granted.user_id == 0 and job.state == "queued"


async def test_revoke_after_training_withholds_what_was_not_delivered_yet(db, data):
    """A subject revoked after its training ended, before the bot delivered its grid and result: neither
    is delivered, and the job's files go with the rest (found by the stateful test)."""
    subject = await trained(db, data, queue=QUEUE)
    assert {e.kind for e in await outbox.pending(db, limit=100)} >= {"train_done"}
    await lifecycle.revoke(db, subject_id=subject.id, guild_id=9, moderator_id=7, reason="x", data_dir=data)
    assert not [e for e in await outbox.pending(db, limit=100) if e.kind in ("grid", "train_done", "images")]
    assert not (data / "subjects" / str(subject.id)).exists()
