"""Likeness rules end to end: a person's /imagine refused privately, a child's /train held and explained to moderators."""

from __future__ import annotations

from storage import jobs, subjects
from tests.bot.e2e import worker_sim
from tests.bot.e2e.test_train_flow import consent_button


async def test_nudity_with_a_persons_subject_is_refused_privately(emu, world, dreambot):
    """An /imagine asking a person's subject for 'n.u.d.e' gets an ephemeral refusal; nothing is queued."""
    await worker_sim.ready_subject(dreambot.db, dreambot.storage.data_dir, owner_id=world.alice.id,
                                   guild_id=world.guild.id, name="anna", class_noun="woman")
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "imagine",
                                    options={"prompt": "anna, n.u.d.e, on a beach"})
    await record.wait_for_response()
    assert record.ephemeral and "a person's likeness" in record.content and "Reword your prompt" in record.content
    assert [j.kind for j in await jobs.list_jobs(dreambot.db)] == ["train"]


async def test_a_childs_subject_is_held_and_moderators_see_why(emu, world, dreambot, three_photos):
    """In a guild that doesn't review, a 'little girl' subject is held; /mod review says it names a minor."""
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "train",
                                    options={"name": "lily", "class_noun": "little girl"}, attachments=three_photos)
    await record.wait_for(lambda r: r.original is not None and not r.original.loading, timeout=30,
                          what="the /train reply")
    click = await emu.click(record.original, consent_button(record), world.alice)
    await click.wait_for_text("A child's likeness is always reviewed by a moderator first", timeout=10)
    subject = await subjects.find(dreambot.db, owner_id=world.alice.id, name="lily", guild_id=world.guild.id)
    assert subject.state == "consented" and await jobs.list_jobs(dreambot.db) == []
    review = await emu.invoke_slash(world.guild.id, world.channel.id, world.mod, ("mod", "review"))
    await review.wait_for_response(timeout=10)
    card = await review.wait_for_followup()
    assert "names a minor" in card.content
