"""Guild policy, bans, blocklist; drafts and their expiry; delivery records."""

from __future__ import annotations

from storage import deliveries, drafts, guilds, jobs, subjects


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


async def test_expired_drafts_are_found_by_age(db):
    """Only drafts older than the limit are expired."""
    subject = await subjects.create(db, owner_id=1, guild_id=5, name="rex", class_noun="dog")
    assert await drafts.expired(db, max_age=60) == []
    assert [s.id for s in await drafts.expired(db, max_age=60, at=subject.created_at + 61)] == [subject.id]


async def test_discard_deletes_the_draft_and_its_files(db, tmp_path):
    """A discarded draft's photo blob is removed from disk."""
    subject = await subjects.create(db, owner_id=1, guild_id=5, name="rex", class_noun="dog")
    blob = tmp_path / "blobs" / "ab" / "x.png"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"png")
    await subjects.add_photo(db, subject_id=subject.id, sha256="x", path="blobs/ab/x.png", width=1, height=1)
    assert await drafts.discard(db, subject_id=subject.id, data_dir=tmp_path) == 1
    assert not blob.exists() and await subjects.find(db, owner_id=1, name="rex") is None


async def test_interaction_token_expires(db, queue_cfg):
    """A remembered interaction token is valid until its expiry, then cleared by the sweep."""
    job = await jobs.enqueue(db, kind="generate", user_id=1, params={}, cfg=queue_cfg)
    await deliveries.remember_interaction(db, job_id=job.id, channel_id=3, application_id=4, token="tok",
                                          expires_at=1000.0)
    assert (await deliveries.get(db, job.id)).token_valid(900.0)
    assert await deliveries.forget_expired_tokens(db, at=1001.0) == 1
    assert (await deliveries.get(db, job.id)).interaction_token is None
