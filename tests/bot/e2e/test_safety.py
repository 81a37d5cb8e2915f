"""Flagged images end to end: withheld unless the channel is age-restricted and the guild allows spoilers;
the user told privately how many; moderators see the counts and set the policy."""

from __future__ import annotations

import pytest

from bot.emulator import Channel
from storage import guilds, jobs, usage
from tests.bot.e2e import worker_sim
from tests.bot.e2e.conftest import running_bot
from tests.bot.e2e.test_delivery import delivered

SPOILER = "spoiler-in-age-restricted"


async def adult_channel(emu, world, bot) -> Channel:
    """An age-restricted channel, once the bot has it in its cache."""
    channel = emu.add_channel(world.guild, "after-dark", nsfw=True)
    await emu.wait_for(lambda: bot.get_channel(channel.id), what="the age-restricted channel in the bot's cache")
    return channel


async def imagine(emu, world, bot, channel: Channel | None = None, count: int = 1):
    """Alice's /imagine of her trained rex, answered with its place in the queue."""
    await worker_sim.ready_subject(bot.db, bot.storage.data_dir, owner_id=world.alice.id, guild_id=world.guild.id)
    record = await emu.invoke_slash(world.guild.id, (channel or world.channel).id, world.alice, "imagine",
                                    options={"prompt": "rex in space", "count": count})
    await record.wait_for_response(timeout=10)
    return record


def withheld(message) -> bool:
    """The private notice, not the DMs of the subject's own (simulated) training."""
    return "withheld" in message.content


async def finish(bot, **verdicts) -> jobs.Job:
    return await worker_sim.finish_generate(bot.db, bot.storage.data_dir, bot.storage.queue, **verdicts)


@pytest.mark.parametrize(("age_restricted", "mode", "flagged_shown"), [
    (False, "block", False),
    (False, SPOILER, False),
    (True, "block", False),
    (True, SPOILER, True),
])
async def test_a_flagged_image_is_shown_only_as_a_spoiler_where_allowed(emu, world, dreambot, age_restricted, mode,
                                                                        flagged_shown):
    """Posted (as a spoiler) only in an age-restricted channel of a guild whose policy allows it; else withheld."""
    await guilds.set_policy(dreambot.db, guild_id=world.guild.id, by=world.mod.id, nsfw=mode)
    channel = await adult_channel(emu, world, dreambot) if age_restricted else world.channel
    record = await imagine(emu, world, dreambot, channel, count=2)
    await finish(dreambot, flagged=(True, False))
    await record.wait_for(lambda r: r.files, timeout=10, what="the images")
    await delivered(dreambot)
    spoilers = [f.filename.startswith("SPOILER_") for f in record.files]
    assert spoilers == ([True, False] if flagged_shown else [False])


async def test_the_user_is_told_privately_how_many_were_withheld(emu, world, dreambot):
    """Dropped by the worker plus held back by the bot: one ephemeral follow-up, only for the user, says how many."""
    record = await imagine(emu, world, dreambot, count=3)
    await finish(dreambot, flagged=(True, False), withheld=1)
    notice = await record.wait_for_followup(timeout=10)
    assert notice.ephemeral and notice.visible_to == world.alice.id
    assert "2 images of job" in notice.content and "withheld" in notice.content
    assert len(record.files) == 1 and "seeds: 1001" in record.content
    assert not any("withheld" in m.content for m in emu.channel_messages(world.channel))


async def test_a_request_with_every_image_withheld_is_still_answered(emu, world, dreambot):
    """Nothing to show: the public reply says so instead of staying silent, and the user learns the count."""
    record = await imagine(emu, world, dreambot, count=2)
    await finish(dreambot, withheld=2)
    await record.wait_for_text("No images to show", timeout=10)
    notice = await record.wait_for_followup(timeout=10)
    assert record.files == [] and "2 images" in notice.content and notice.ephemeral


async def test_after_the_token_expired_the_user_is_told_by_dm(emu, world, dreambot):
    """With the interaction token gone, the answer goes to the channel and the count to the user's DMs."""
    record = await imagine(emu, world, dreambot)
    emu.expire_interaction(record)
    await finish(dreambot, flagged=(True,))
    answer = await emu.wait_for_message(world.channel, lambda m: "No images to show" in m.content, timeout=10)
    dm = await emu.wait_for_message(emu.state.dm_channel(world.alice), withheld, timeout=10)
    assert answer.files == [] and "1 image of job" in dm.content and "withheld" in dm.content


async def training_grid(bot, world, *, meta: dict, final: bool = False):
    """A training job of Alice's rex in #general with one recorded sample grid (meta as the worker wrote it)."""
    db, data_dir = bot.db, bot.storage.data_dir
    subject = await worker_sim.ready_subject(db, data_dir, owner_id=world.alice.id, guild_id=world.guild.id)
    job = await jobs.enqueue(db, kind="train", user_id=world.alice.id, params={}, cfg=bot.storage.queue,
                             guild_id=world.guild.id, channel_id=world.channel.id, subject_id=subject.id)
    grid = await worker_sim.record_file(db, data_dir, f"jobs/{job.id}/grid-step5.png", worker_sim.png(),
                                        kind="grid", job_id=job.id, subject_id=subject.id, meta=meta)
    return subject, job, grid


async def test_a_flagged_sample_grid_is_withheld_and_the_owner_told(emu, world, dreambot):
    """A checkpoint grid the checker flagged never reaches a normal channel; its owner gets a DM."""
    _, job, grid = await training_grid(dreambot, world, meta={"step": 5, "nsfw": True, "withheld": 0})
    await worker_sim.post(dreambot.db, job, "grid", {"step": 5, "artifact_id": grid.id, "final": False,
                                                     "nsfw": True, "withheld": 0})
    dm = await emu.wait_for_message(emu.state.dm_channel(world.alice), withheld, timeout=10)
    await delivered(dreambot)
    assert "1 image of job" in dm.content and emu.channel_messages(world.channel) == []


async def test_greyed_out_tiles_are_counted_in_the_owner_notice(emu, world, dreambot):
    """A grid whose flagged tiles the worker greyed out is posted; the owner learns how many tiles went."""
    _, job, grid = await training_grid(dreambot, world, meta={"step": 5, "nsfw": False, "withheld": 2})
    await worker_sim.post(dreambot.db, job, "grid", {"step": 5, "artifact_id": grid.id, "final": False,
                                                     "nsfw": False, "withheld": 2})
    posted = await emu.wait_for_message(world.channel, lambda m: m.files, timeout=10)
    dm = await emu.wait_for_message(emu.state.dm_channel(world.alice), withheld, timeout=10)
    assert "sample grid at step 5" in posted.content and "2 images of job" in dm.content


async def test_a_flagged_final_grid_leaves_the_buttons(emu, world, dreambot):
    """The training's last message still comes, with its buttons, but without the flagged grid."""
    subject, job, grid = await training_grid(dreambot, world, meta={"step": 10, "nsfw": True, "withheld": 0})
    await worker_sim.post(dreambot.db, job, "train_done", {
        "subject_id": subject.id, "adapter_artifact_id": subject.adapter_artifact_id, "kohya_artifact_id": None,
        "grid_artifact_id": grid.id, "checkpoints": []})
    done = await emu.wait_for_message(world.channel, lambda m: "is trained" in m.content, timeout=10)
    dm = await emu.wait_for_message(emu.state.dm_channel(world.alice), withheld, timeout=10)
    assert done.files == [] and "final sample grid is not shown" in done.content and "1 image" in dm.content
    assert [b["label"] for b in done.buttons] == ["Keep final", "Discard"]


async def mod(emu, world, *name, **options):
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.mod, ("mod", *name), options=options)
    await record.wait_for_response(timeout=10)
    return record


@pytest.mark.parametrize(("by", "label"), [("user", "<@{alice}>"), ("subject", "subject #{subject}")])
async def test_mod_usage_shows_flagged_and_withheld_counts(emu, world, dreambot, by, label):
    """/mod usage counts what the checker flagged and what nobody saw, per user and per subject."""
    record = await imagine(emu, world, dreambot, count=3)
    done = await finish(dreambot, flagged=(True, False), withheld=1)
    await record.wait_for_followup(timeout=10)
    (total,) = await usage.totals(dreambot.db, by="user_id", guild_id=world.guild.id)
    assert (total.flagged, total.withheld) == (2, 2)
    listing = await mod(emu, world, "usage", by=by)
    line = label.format(alice=world.alice.id, subject=done.subject_id)
    assert listing.ephemeral and f"{line}: " in listing.content
    assert "2 flagged by the safety checker, 2 withheld" in listing.content


async def test_mod_policy_sets_the_nsfw_mode(emu, world, dreambot):
    """/mod policy nsfw: changes the guild's mode, shows it, and posts the change to the audit channel."""
    record = await mod(emu, world, "policy", nsfw=SPOILER)
    assert "posted as spoilers in age-restricted channels only" in record.content
    assert await guilds.nsfw_mode(dreambot.db, world.guild.id) == SPOILER
    assert "Safety checker" not in record.content
    await emu.wait_for_message(world.audit, lambda m: "guild.policy_changed" in m.embed_titles, timeout=10)


async def test_mod_policy_says_when_the_checker_is_off(emu, world, config):
    """With trainer.safety_checker = "off", /mod policy says plainly that nothing is checked."""
    async with running_bot(config, emu.token, safety_checker_off=True):
        record = await mod(emu, world, "policy")
    assert "Safety checker: **off**" in record.content and 'safety_checker = "off"' in record.content
