"""Guild policy, bans, blocklist; drafts and their expiry; delivery records."""

from __future__ import annotations

from storage import deliveries, guilds, jobs, lifecycle, subjects
from tests.helpers import draft


async def test_policy_defaults_then_overrides(db):
    """Unset settings come from the config default; set ones override it and are audited."""
    assert (await guilds.policy(db, 5, default_review=True)).review_required is True
    await guilds.set_policy(db, guild_id=5, by=9, review_required=False, max_images_per_day=3)
    policy = await guilds.policy(db, 5, default_review=True)
    assert (policy.review_required, policy.max_images_per_day, policy.max_subjects_per_user) == (False, 3, None)


async def test_ban_and_unban(db):
    """A ban is found until lifted; unbanning twice reports the second as a no-op."""
    await guilds.ban(db, guild_id=5, user_id=1, by=9, reason="spam")
    assert (await guilds.get_ban(db, guild_id=5, user_id=1)).reason == "spam"
    assert await guilds.unban(db, guild_id=5, user_id=1, by=9) is True
    assert await guilds.unban(db, guild_id=5, user_id=1, by=9) is False


async def test_expired_drafts_are_found_by_age(db, tmp_path):
    """Only drafts older than the limit are expired."""
    subject = await draft(db, tmp_path)
    assert await lifecycle.expire_drafts(db, data_dir=tmp_path, max_age=60) == 0
    assert [s.id for s in await subjects.drafts(db)] == [subject.id]
    assert await lifecycle.expire_drafts(db, data_dir=tmp_path, max_age=60, at=subject.created_at + 61) == 1
    assert await subjects.drafts(db) == []


async def test_discard_deletes_the_draft_and_its_files(db, tmp_path):
    """A discarded draft's photo blobs are removed from disk."""
    subject = await draft(db, tmp_path, n_photos=3)
    blobs = [tmp_path / p.path for p in await subjects.photos(db, subject.id)]
    assert len(blobs) == 3 and all(b.exists() for b in blobs)
    assert await lifecycle.discard_draft(db, subject_id=subject.id, data_dir=tmp_path) == 3
    assert not any(b.exists() for b in blobs) and await subjects.find(db, owner_id=1, name="rex") is None


async def test_discarding_a_draft_keeps_a_blob_another_subject_uses(db, tmp_path):
    """A photo blob shared by content with another subject stays when one draft is discarded."""
    kept = await draft(db, tmp_path, name="rex")
    gone = await draft(db, tmp_path, name="max")  # same owner, same stand-in photos: the same blobs
    await lifecycle.discard_draft(db, subject_id=gone.id, data_dir=tmp_path)
    assert all((tmp_path / p.path).exists() for p in await subjects.photos(db, kept.id))


async def test_interaction_token_expires(db, queue_cfg):
    """A remembered interaction token is valid until its expiry, then cleared by the sweep."""
    job = await jobs.enqueue(db, kind="generate", user_id=1, params={}, cfg=queue_cfg)
    await deliveries.remember_interaction(db, job_id=job.id, channel_id=3, application_id=4, token="tok",
                                          expires_at=1000.0)
    assert (await deliveries.get(db, job.id)).token_valid(900.0)
    assert await deliveries.forget_expired_tokens(db, at=1001.0) == 1
    assert (await deliveries.get(db, job.id)).interaction_token is None
