"""Slash commands, components, autocomplete and modals through the real discord.py client."""

from __future__ import annotations

import discord
import pytest

from bot.emulator import DiscordEmulator
from tests.bot.emulator.conftest import World
from tests.bot.emulator.tiny_bot import TinyBot


async def test_slash_command_reply_is_recorded_and_posted(emu: DiscordEmulator, world: World, bot: TinyBot):
    """A /ping reply is the record's content and a visible channel message."""
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "ping")
    await record.wait_for_response()
    assert (record.response_type, record.content, record.ephemeral) == (4, "pong", False)
    assert [m.content for m in emu.channel_messages(world.channel)] == ["pong"]


async def test_ephemeral_reply_is_recorded_and_kept_out_of_the_channel(
    emu: DiscordEmulator, world: World, bot: TinyBot
):
    """An ephemeral reply sets the flag on the record and never appears in the channel."""
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "secret")
    await record.wait_for_response()
    assert record.ephemeral and record.content == "just for you"
    assert emu.channel_messages(world.channel) == []


async def test_first_followup_after_defer_replaces_the_thinking_message(
    emu: DiscordEmulator, world: World, bot: TinyBot
):
    """defer() then followup.send(file=...) turns the placeholder into the reply with the file."""
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "render")
    followup = await record.wait_for_followup()
    assert record.response_type == 5
    assert followup.id == record.original_id and not followup.loading
    assert [(f.filename, f.data) for f in followup.files] == [("result.png", b"\x89PNG fake")]
    assert [r.flags & 128 for r in followup.history] == [128, 0]


async def test_attachment_option_is_downloadable_by_the_bot(emu: DiscordEmulator, world: World, bot: TinyBot):
    """A file passed to an attachment option reaches the bot through the CDN with its type."""
    record = await emu.invoke_slash(
        world.guild.id,
        world.channel.id,
        world.alice,
        "upload",
        options={"caption": "hi"},
        attachments=[("rex.jpg", b"x" * 1234, "image/jpeg")],
    )
    await record.wait_for_response()
    assert record.content == "rex.jpg 1234 image/jpeg hi"
    assert record.payload["data"]["resolved"]["attachments"]


async def test_attachments_fill_free_attachment_options_in_order(
    emu: DiscordEmulator, world: World, bot: TinyBot
):
    """``attachments=[...]`` go to the command's attachment options in declaration order."""
    record = await emu.invoke_slash(
        world.guild.id, world.channel.id, world.alice, "album", attachments=[("a.png", b"1"), ("b.png", b"2")]
    )
    await record.wait_for_response()
    assert record.content == "a.png, b.png"


async def test_reply_with_file_is_recorded(emu: DiscordEmulator, world: World, bot: TinyBot):
    """A multipart interaction callback keeps its file and its ephemeral flag."""
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "grid")
    await record.wait_for_response()
    assert record.ephemeral and [(f.filename, f.data) for f in record.files] == [("grid.jpg", b"grid")]


async def test_button_click_runs_the_view_callback(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Clicking the view's button edits the message in place and removes the buttons."""
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "confirm")
    await record.wait_for_response()
    click = await emu.click(record.original, "confirm", world.alice)
    await click.wait_for_response()
    msg = record.original
    assert click.response_type == 7
    assert (msg.content, msg.components) == ("Confirmed by alice", [])
    assert [r.content for r in msg.history] == ["Proceed?", "Confirmed by alice"]


async def test_select_menu_values_reach_the_callback(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Choosing in a select menu sends the values to the view's callback."""
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "presets")
    await record.wait_for_response()
    choice = await emu.click(record.original, "preset", world.alice, values=["faces"])
    await choice.wait_for_text("preset faces")
    assert choice.ephemeral


async def test_autocomplete_returns_the_bots_choices(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Typing into an autocomplete option returns what the bot suggests for that prefix."""
    choices = await emu.autocomplete(
        world.guild.id, world.channel.id, world.alice, "imagine", {"subject": "r"}, "subject"
    )
    assert [c["value"] for c in choices] == ["rex", "rover"]


async def test_modal_submission_reaches_on_submit(emu: DiscordEmulator, world: World, bot: TinyBot):
    """A submitted modal's values reach the bot's on_submit."""
    opened = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "report")
    await opened.wait_for_response()
    assert opened.modal["title"] == "Report an image"
    submitted = await emu.submit_modal(opened, {"reason": "not my dog"})
    await submitted.wait_for_text("Reported: not my dog")
    assert submitted.ephemeral


async def test_progress_edits_keep_history(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Each edit of @original is kept in the message history."""
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "progress")
    await record.wait_for(lambda r: r.content == "100%")
    assert [r.content for r in record.original.history] == ["0%", "50%", "100%"]


async def test_expired_token_fails_the_followup(emu: DiscordEmulator, world: World, bot: TinyBot):
    """A follow-up on an expired interaction token raises 401 / 50027 in the bot."""
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "slow")
    await record.wait_for_response()
    emu.expire_interaction(record)
    bot.release.set()
    await emu.wait_for(lambda: bot.errors, what="the bot's follow-up error")
    error = bot.errors[0]
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (401, 50027)


async def test_late_acknowledgement_is_an_unknown_interaction(
    emu: DiscordEmulator, world: World, bot: TinyBot
):
    """Answering after the 3-second window fails with 404 / 10062 as on Discord."""
    errors: list[Exception] = []

    @bot.tree.command(description="Too slow")
    async def late(interaction: discord.Interaction) -> None:
        emu.clock.advance(5)
        try:
            await interaction.response.send_message("too late")
        except discord.NotFound as exc:
            errors.append(exc)

    await bot.tree.sync()
    await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "late")
    await emu.wait_for(lambda: errors, what="the late reply's error")
    assert errors[0].code == 10062


async def test_subcommand_group_runs_for_a_moderator(emu: DiscordEmulator, world: World, bot: TinyBot):
    """/mod review runs for a member whose role grants the group's default permissions."""
    record = await emu.invoke_slash(
        world.guild.id, world.channel.id, world.mod, ("mod", "review"), {"subject": "rex"}
    )
    await record.wait_for_response()
    assert record.content == "reviewing rex"


async def test_hidden_command_cannot_be_invoked(emu: DiscordEmulator, world: World, bot: TinyBot):
    """A member without the default permissions cannot run /mod (Discord hides it)."""
    with pytest.raises(PermissionError):
        await emu.invoke_slash(
            world.guild.id, world.channel.id, world.alice, "mod review", {"subject": "rex"}
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"subject": "rex", "steps": 99}, "between 1 and 50"),
        ({}, "needs option 'subject'"),
        ({"colour": 1}, "no option"),
    ],
)
async def test_invalid_options_are_refused_before_dispatch(
    emu: DiscordEmulator, world: World, bot: TinyBot, options, message
):
    """Options the Discord client would not send raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=message):
        await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "imagine", options)
