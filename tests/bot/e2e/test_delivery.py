"""Worker results reach Discord: into the command's reply, or the channel; shrunk, retried, exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import math

from storage import artifacts, jobs, outbox, subjects
from storage.config import OutboxConfig
from tests.bot.e2e import worker_sim
from tests.bot.e2e.conftest import running_bot


async def imagine(emu, world, prompt: str = "rex in space", **options):
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "imagine",
                                    options={"prompt": prompt, **options})
    await record.wait_for_response(timeout=10)
    return record


async def delivered(bot) -> None:
    await asyncio.wait_for(_drain(bot), 10)


async def _drain(bot) -> None:
    while await outbox.pending(bot.db, at=math.inf):  # every undelivered event, due or backing off
        await asyncio.sleep(0.02)


async def test_images_replace_the_command_reply(emu, world, dreambot):
    """The images, the user's own prompt, their seeds and Re-roll / Vary buttons replace the /imagine reply."""
    await worker_sim.ready_subject(dreambot.db, dreambot.storage.data_dir, owner_id=world.alice.id,
                                   guild_id=world.guild.id)
    record = await imagine(emu, world, count=2)
    assert "position 1" in record.content
    await worker_sim.finish_generate(dreambot.db, dreambot.storage.data_dir, dreambot.storage.queue)
    await record.wait_for(lambda r: len(r.files) == 2, timeout=10, what="two images in the reply")
    assert "**rex in space**" in record.content and "1000, 1001" in record.content
    assert [b["label"] for b in record.original.buttons] == ["Re-roll", "Vary"]


async def test_expired_token_posts_to_the_channel(emu, world, dreambot):
    """When the interaction token has expired, the result is a new channel message sent with the bot token."""
    await worker_sim.ready_subject(dreambot.db, dreambot.storage.data_dir, owner_id=world.alice.id,
                                   guild_id=world.guild.id)
    record = await imagine(emu, world)
    emu.expire_interaction(record)
    await worker_sim.finish_generate(dreambot.db, dreambot.storage.data_dir, dreambot.storage.queue)
    msg = await emu.wait_for_message(world.channel, lambda m: m.files and m.interaction_id is None, timeout=10)
    assert "rex in space" in msg.content and record.files == []


async def test_oversized_image_is_shrunk_after_413(emu, world, dreambot):
    """A server limit below ours answers 413; the bot re-encodes the image smaller and it arrives."""
    await worker_sim.ready_subject(dreambot.db, dreambot.storage.data_dir, owner_id=world.alice.id,
                                   guild_id=world.guild.id)
    emu.faults.upload_limit = 120_000
    record = await imagine(emu, world)
    await worker_sim.finish_generate(dreambot.db, dreambot.storage.data_dir, dreambot.storage.queue,
                                     image=worker_sim.png(512, noisy=True))
    await record.wait_for(lambda r: r.files, timeout=20, what="the shrunk image")
    assert record.files[0].size <= 120_000 and record.files[0].filename.endswith(".jpg")


async def test_rate_limited_send_is_retried(emu, world, dreambot):
    """A 429 on the channel send is waited out and the message arrives once."""
    emu.faults.rate_limit("POST", "/channels/{channel_id}/messages", times=1, retry_after=0.1)
    job = await jobs.enqueue(dreambot.db, kind="train", user_id=world.alice.id, params={}, cfg=dreambot.storage.queue,
                             guild_id=world.guild.id, channel_id=world.channel.id)
    await worker_sim.post(dreambot.db, job, "failed", {"error": "The photos could not be read."})
    msg = await emu.wait_for_message(world.channel, lambda m: "failed" in m.content, timeout=10)
    await delivered(dreambot)
    assert emu.faults.fired and len([m for m in emu.channel_messages(world.channel) if m.id == msg.id]) == 1
    assert len(emu.channel_messages(world.channel)) == 1


async def test_delivery_is_exactly_once_across_a_crash(emu, world, config, monkeypatch):
    """Killed after Discord accepted a message but before marking it delivered, the restarted bot adds none."""
    accepted = asyncio.Event()
    real_mark = outbox.mark_delivered

    async def crash_before_marking(db, event_id):
        accepted.set()
        await asyncio.Event().wait()  # the process "dies" here: the mark never happens

    monkeypatch.setattr(outbox, "mark_delivered", crash_before_marking)
    async with running_bot(config, emu.token) as first:
        job = await jobs.enqueue(first.db, kind="train", user_id=world.alice.id, params={},
                                 cfg=first.storage.queue, guild_id=world.guild.id, channel_id=world.channel.id)
        await worker_sim.post(first.db, job, "failed", {"error": "out of memory"})
        await asyncio.wait_for(accepted.wait(), 10)
    monkeypatch.setattr(outbox, "mark_delivered", real_mark)
    async with running_bot(config, emu.token) as second:
        await delivered(second)
    assert len(emu.channel_messages(world.channel)) == 1
    assert any("duplicate nonce" in line for line in emu.transcript.lines)


async def test_training_progress_edits_one_status_message(emu, world, dreambot):
    """Progress events edit a single status message with a bar, step/total and time left."""
    subject = await worker_sim.ready_subject(dreambot.db, dreambot.storage.data_dir, owner_id=world.alice.id,
                                             guild_id=world.guild.id)
    job = await jobs.enqueue(dreambot.db, kind="train", user_id=world.alice.id, params={},
                             cfg=dreambot.storage.queue, guild_id=world.guild.id, channel_id=world.channel.id,
                             subject_id=subject.id)
    for step in (10, 20):
        await worker_sim.post(dreambot.db, job, "progress", {"step": step, "total": 40, "message": "",
                                                             "eta_seconds": 90, "loss": 0.1})
        await delivered(dreambot)
    (status,) = emu.channel_messages(world.channel)
    assert "step 20/40" in status.content and "50%" in status.content and "1 min 30 s" in status.content
    assert len(status.history) == 2 and [b["label"] for b in status.buttons] == ["Cancel"]


async def test_final_grid_falls_back_to_a_checkpoint(emu, world, dreambot):
    """The final grid's "Use step N" button points the subject at that checkpoint."""
    db, data_dir = dreambot.db, dreambot.storage.data_dir
    subject = await worker_sim.ready_subject(db, data_dir, owner_id=world.alice.id, guild_id=world.guild.id)
    job = await jobs.enqueue(db, kind="train", user_id=world.alice.id, params={}, cfg=dreambot.storage.queue,
                             guild_id=world.guild.id, channel_id=world.channel.id, subject_id=subject.id)
    # as trainer/train.py lays it out: checkpoints/step-N/adapter/pytorch_lora_weights.safetensors
    (data_dir / f"jobs/{job.id}/checkpoints/step-5/adapter").mkdir(parents=True)
    (data_dir / f"jobs/{job.id}/checkpoints/step-5/adapter/pytorch_lora_weights.safetensors").write_bytes(b"w")
    ckpt = await artifacts.record(db, kind="checkpoint", path=f"jobs/{job.id}/checkpoints/step-5", data_dir=data_dir,
                                  job_id=job.id, subject_id=subject.id, meta={"step": 5})
    grid = await worker_sim.record_file(db, data_dir, f"jobs/{job.id}/grid.png", worker_sim.png(), kind="grid",
                                        job_id=job.id, subject_id=subject.id)
    await worker_sim.post(db, job, "train_done", {
        "subject_id": subject.id, "adapter_artifact_id": subject.adapter_artifact_id, "kohya_artifact_id": None,
        "grid_artifact_id": grid.id, "checkpoints": [{"step": 5, "artifact_id": ckpt.id}]})
    msg = await emu.wait_for_message(world.channel, lambda m: m.files, timeout=10)
    assert [b["label"] for b in msg.buttons] == ["Keep final", "Use step 5", "Discard"]
    click = await emu.click(msg, f"subject:use:{subject.id}:{ckpt.id}", world.alice)
    await click.wait_for_text("checkpoint at step 5")
    chosen = await artifacts.get(db, (await subjects.get(db, subject.id)).adapter_artifact_id)
    assert (chosen.kind, chosen.path, chosen.meta["from_checkpoint"]) == ("adapter", f"{ckpt.path}/adapter", ckpt.id)


async def test_reroll_queues_the_same_prompt_again(emu, world, dreambot):
    """Re-roll on a result queues a new generate job with the same prompt and fresh seeds."""
    await worker_sim.ready_subject(dreambot.db, dreambot.storage.data_dir, owner_id=world.alice.id,
                                   guild_id=world.guild.id)
    record = await imagine(emu, world)
    done = await worker_sim.finish_generate(dreambot.db, dreambot.storage.data_dir, dreambot.storage.queue)
    await record.wait_for(lambda r: r.files, timeout=10, what="the images")
    click = await emu.click(record.original, f"imagine:reroll:{done.id}", world.alice)
    await click.wait_for_text("queued as job")
    newest = (await jobs.list_jobs(dreambot.db, user_id=world.alice.id))[0]
    assert (newest.params["prompt"], newest.params["seed"], newest.state) == (done.params["prompt"], None, "queued")


def quick_outbox(config, **outbox_settings):
    """The test config with an outbox that backs off in milliseconds."""
    settings = OutboxConfig(**{"base_seconds": 0.01, "max_seconds": 0.05, "park_after": 3, **outbox_settings})
    return dataclasses.replace(config, storage=dataclasses.replace(config.storage, outbox=settings))


async def test_discord_down_parks_the_result_and_delivers_it_later(emu, world, config):
    """Sends refused for a while: the event backs off, is parked (moderators see it), and arrives once after."""
    emu.faults.fail("POST", "/channels/{channel_id}/messages", status=503, code=0, message="Service Unavailable",
                    times=10_000)
    async with running_bot(quick_outbox(config), emu.token) as bot:
        job = await jobs.enqueue(bot.db, kind="train", user_id=world.alice.id, params={}, cfg=bot.storage.queue,
                                 guild_id=world.guild.id, channel_id=world.channel.id)
        event_id = await worker_sim.post(bot.db, job, "failed", {"error": "out of memory"})
        await emu.wait_for(lambda: len(emu.faults.fired) >= 5, timeout=10, what="five refused sends")
        parked = await outbox.get(bot.db, event_id)
        assert parked.parked and parked.delivered_at is None and "Service Unavailable" in parked.last_error
        listing = await emu.invoke_slash(world.guild.id, world.channel.id, world.mod, ("mod", "outbox"))
        await listing.wait_for_response(timeout=10)
        assert listing.ephemeral and f"#{event_id} failed, job #{job.id}" in listing.content
        emu.faults.clear()
        msg = await emu.wait_for_message(world.channel, lambda m: "out of memory" in m.content, timeout=10)
        await delivered(bot)
    assert [m.id for m in emu.channel_messages(world.channel)] == [msg.id]


async def test_a_job_waiting_on_a_refused_event_keeps_its_order(emu, world, config):
    """While a job's first event backs off, its second is held back; they arrive first to last."""
    emu.faults.fail("POST", "/channels/{channel_id}/messages", status=503, code=0, message="Service Unavailable",
                    times=3)
    # parked from the first failure: it waits 0.2-0.4 s, many of the bot's 0.05 s polls
    async with running_bot(quick_outbox(config, park_after=1, max_seconds=0.4), emu.token) as bot:
        job = await jobs.enqueue(bot.db, kind="train", user_id=world.alice.id, params={}, cfg=bot.storage.queue,
                                 guild_id=world.guild.id, channel_id=world.channel.id)
        await worker_sim.post(bot.db, job, "notice", {"text": "first"})
        await worker_sim.post(bot.db, job, "notice", {"text": "second"})
        await emu.wait_for(lambda: len(emu.channel_messages(world.channel)) == 2, timeout=10, what="both")
    assert [m.content for m in emu.channel_messages(world.channel)] == ["first", "second"]


async def test_user_text_in_a_public_message_does_not_render(emu, world, dreambot):
    """A failure quoting a user's markdown and masked link shows them as typed, not as formatting or a link."""
    job = await jobs.enqueue(dreambot.db, kind="train", user_id=world.alice.id, params={},
                             cfg=dreambot.storage.queue, guild_id=world.guild.id, channel_id=world.channel.id)
    await worker_sim.post(dreambot.db, job, "failed", {"error": "bad prompt **[free nitro](http://evil.example)**"})
    msg = await emu.wait_for_message(world.channel, lambda m: "failed" in m.content, timeout=10)
    assert r"\*\*\[free nitro]\(http://evil.example)\*\*" in msg.content
