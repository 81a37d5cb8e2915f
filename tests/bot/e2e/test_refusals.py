"""Every refusal answers privately with what to do next, and changes nothing."""

from __future__ import annotations

import dataclasses

import pytest

from storage import guilds, jobs, lifecycle
from tests.bot.e2e import worker_sim
from tests.bot.e2e.conftest import running_bot


async def imagine(emu, world, user, **options):
    record = await emu.invoke_slash(world.guild.id, world.channel.id, user, "imagine", options=options)
    await record.wait_for_response(timeout=10)
    return record


async def test_too_few_photos_is_refused(emu, world, config, three_photos):
    """With a minimum of four photos, three are refused with how many to add."""
    photos = dataclasses.replace(config.storage.photos, min_per_subject=4)
    config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, photos=photos))
    async with running_bot(config, emu.token):
        record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "train",
                                        options={"name": "rex", "class_noun": "dog"}, attachments=three_photos)
        text = await record.wait_for_text("Add 1 more", timeout=30)
    assert record.ephemeral and "at least 4 photos" in text


async def test_unknown_subject_is_refused(emu, world, dreambot):
    """/imagine naming no subject of the user's says how to name one."""
    record = await imagine(emu, world, world.alice, prompt="a cat in space")
    assert record.ephemeral and "names none of your subjects" in record.content


async def test_someone_elses_subject_is_refused(emu, world, dreambot):
    """Bob cannot use Alice's subject, even by choosing it by name."""
    await worker_sim.ready_subject(dreambot.db, dreambot.storage.data_dir, owner_id=world.alice.id,
                                   guild_id=world.guild.id)
    record = await imagine(emu, world, world.bob, prompt="in space", subject="rex")
    assert record.ephemeral and "You have no subject called 'rex'" in record.content


async def test_revoked_subject_is_refused(emu, world, dreambot):
    """After a moderator revokes a subject, /imagine with it is refused."""
    subject = await worker_sim.ready_subject(dreambot.db, dreambot.storage.data_dir, owner_id=world.alice.id,
                                             guild_id=world.guild.id)
    await lifecycle.revoke(dreambot.db, subject_id=subject.id, guild_id=world.guild.id, moderator_id=world.mod.id,
                           reason="no consent from the pictured person", data_dir=dreambot.storage.data_dir)
    record = await imagine(emu, world, world.alice, prompt="rex in space")
    assert record.ephemeral and "consent was revoked" in record.content
    assert [j.kind for j in await jobs.list_jobs(dreambot.db, user_id=world.alice.id)] == ["train"]  # rex's own


async def test_banned_user_is_refused(emu, world, dreambot):
    """A banned member's /imagine is refused with who to ask."""
    await guilds.ban(dreambot.db, guild_id=world.guild.id, user_id=world.alice.id, by=world.mod.id, reason="spam")
    record = await imagine(emu, world, world.alice, prompt="rex in space")
    assert record.ephemeral and "barred you" in record.content and "spam" in record.content


async def test_full_queue_is_refused(emu, world, dreambot):
    """With max_queued_per_user jobs waiting, another /imagine says to wait or /cancel."""
    await worker_sim.ready_subject(dreambot.db, dreambot.storage.data_dir, owner_id=world.alice.id,
                                   guild_id=world.guild.id)
    for n in range(dreambot.storage.queue.max_queued_per_user):
        assert not (await imagine(emu, world, world.alice, prompt=f"rex number {n}")).ephemeral
    record = await imagine(emu, world, world.alice, prompt="rex once more")
    assert record.ephemeral and "/cancel" in record.content


async def test_cooldown_is_refused(emu, world, config):
    """A second /imagine inside the cooldown says how many seconds to wait."""
    config = dataclasses.replace(config, bot=dataclasses.replace(config.bot, imagine_cooldown_seconds=60))
    async with running_bot(config, emu.token) as bot:
        await worker_sim.ready_subject(bot.db, bot.storage.data_dir, owner_id=world.alice.id,
                                       guild_id=world.guild.id)
        assert not (await imagine(emu, world, world.alice, prompt="rex in space")).ephemeral
        record = await imagine(emu, world, world.alice, prompt="rex on the moon")
    assert record.ephemeral and "Try again in" in record.content


@pytest.mark.parametrize(("term", "prompt"), [("moon", "rex on the Moon"), ("red hat", "rex in a red  hat")])
async def test_blocked_term_is_refused(emu, world, dreambot, term, prompt):
    """A prompt with a word on the guild's blocklist is refused, naming the word."""
    await worker_sim.ready_subject(dreambot.db, dreambot.storage.data_dir, owner_id=world.alice.id,
                                   guild_id=world.guild.id)
    await guilds.block_term(dreambot.db, guild_id=world.guild.id, term=term, by=world.mod.id)
    record = await imagine(emu, world, world.alice, prompt=prompt)
    assert record.ephemeral and f"doesn't allow '{term}'" in record.content


async def test_expired_attachment_url_asks_to_attach_again_and_logs_no_url(emu, world, dreambot, three_photos,
                                                                          caplog):
    """An attachment that can no longer be downloaded is refused with advice; its signed URL stays out of the logs."""
    emu.state.cdn.ttl = -1  # every URL the emulator hands out is already expired
    caplog.set_level("DEBUG")
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "train",
                                    options={"name": "rex", "class_noun": "dog"}, attachments=three_photos)
    text = await record.wait_for_text("Attach it again", timeout=30)
    assert record.ephemeral and "could not be downloaded" in text
    assert "hm=" not in caplog.text and "/attachments/" not in caplog.text
    assert await jobs.list_jobs(dreambot.db) == []
