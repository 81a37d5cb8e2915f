"""/train end to end: photos in, consent, queue; refusals; a restart between /train and Confirm."""

from __future__ import annotations

import pytest

from storage import consent, jobs, subjects
from tests.bot.e2e.conftest import photo, running_bot


def consent_button(record, action: str = "confirm") -> str:
    return next(b["custom_id"] for b in record.original.buttons if b["custom_id"].startswith(f"consent:{action}"))


async def start_train(emu, world, attachments, name: str = "rex", user=None):
    record = await emu.invoke_slash(world.guild.id, world.channel.id, user or world.alice, "train",
                                    options={"name": name, "class_noun": "dog"}, attachments=attachments)
    await record.wait_for(lambda r: r.original is not None and not r.original.loading, timeout=30,
                          what="the /train reply")
    return record


async def test_train_then_confirm_queues_with_consent(emu, world, dreambot, three_photos):
    """Confirm records the exact consent text and queues a train job for the subject."""
    record = await start_train(emu, world, three_photos)
    assert record.ephemeral and "Before dreambot trains" in record.content
    click = await emu.click(record.original, consent_button(record), world.alice)
    await click.wait_for_text("queued as job", timeout=10)
    subject = await subjects.find(dreambot.db, owner_id=world.alice.id, name="rex")
    granted = await consent.require(dreambot.db, subject.id)
    assert (subject.state, granted.text) == ("queued", consent.text_for(name="rex", class_noun="dog"))
    assert [j.kind for j in await jobs.list_jobs(dreambot.db, user_id=world.alice.id)] == ["train"]


async def test_confirm_works_after_a_restart(emu, world, config, three_photos):
    """The Confirm button of a /train answered before a restart still queues after it."""
    async with running_bot(config, emu.token):
        record = await start_train(emu, world, three_photos)
    async with running_bot(config, emu.token) as second:
        click = await emu.click(record.original, consent_button(record), world.alice)
        await click.wait_for_text("queued as job", timeout=10)
        subject = await subjects.find(second.db, owner_id=world.alice.id, name="rex")
        assert subject.state == "queued"


async def test_cancel_deletes_the_photos(emu, world, dreambot, three_photos):
    """Cancel deletes the draft and its photo files."""
    record = await start_train(emu, world, three_photos)
    click = await emu.click(record.original, consent_button(record, "cancel"), world.alice)
    await click.wait_for_text("photos were deleted")
    assert await subjects.find(dreambot.db, owner_id=world.alice.id, name="rex") is None
    assert not [p for p in (dreambot.storage.data_dir / "blobs").rglob("*") if p.is_file()]


@pytest.mark.parametrize(("files", "advice"), [
    ([("a.jpg", photo("chelsea"), "image/jpeg"), ("b.jpg", photo("astronaut"), "image/jpeg"),
      ("notes.txt", b"hello there, not a photo", "text/plain")], "Send a JPEG, PNG, WebP or HEIC photo"),
    ([("a.jpg", photo("chelsea"), "image/jpeg"), ("b.jpg", b"\xff\xd8\xff\xe0broken", "image/jpeg"),
      ("c.jpg", photo("rocket"), "image/jpeg")], "Replace or remove those photos and try again"),
])
async def test_bad_photo_is_refused_with_advice(emu, world, dreambot, files, advice):
    """A file that is not a usable photo refuses the whole /train privately, with what to send instead."""
    record = await start_train(emu, world, files)
    assert record.ephemeral and advice in record.content
    assert await subjects.find(dreambot.db, owner_id=world.alice.id, name="rex") is None
