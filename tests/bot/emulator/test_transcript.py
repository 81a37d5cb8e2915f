"""The readable transcript of user actions and bot replies."""

from __future__ import annotations

from bot.emulator import DiscordEmulator
from tests.bot.emulator.conftest import World
from tests.bot.emulator.tiny_bot import TinyBot


async def test_slash_command_and_ephemeral_reply_lines(emu: DiscordEmulator, world: World, bot: TinyBot):
    """The user's command (options, photo count) and who sees the reply are written out."""
    record = await emu.invoke_slash(
        world.guild.id,
        world.channel.id,
        world.alice,
        "upload",
        options={"caption": "good dog"},
        attachments=[("rex.jpg", b"123", "image/jpeg")],
    )
    await record.wait_for_response()
    secret = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "secret")
    await secret.wait_for_response()
    assert '[#general] alice: /upload caption:"good dog" (1 photo)' in emu.transcript.lines
    assert "[#general] dreambot (only alice sees this): just for you" in emu.transcript.lines


async def test_deferral_click_and_edit_lines(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Thinking, buttons, clicks and edits each get a line."""
    render = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "render")
    await render.wait_for_followup()
    confirm = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "confirm")
    await confirm.wait_for_response()
    click = await emu.click(confirm.original, "confirm", world.alice)
    await click.wait_for_response()
    lines = emu.transcript.lines
    assert "[#general] dreambot is thinking..." in lines
    assert "[#general] dreambot: done [files: result.png 1 KB]" in lines
    assert "[#general] dreambot: Proceed? [buttons: Confirm]" in lines
    assert "[#general] alice clicked [Confirm]" in lines
    assert "[#general] dreambot edited: Confirmed by alice" in lines


async def test_on_event_streams_lines_and_save_writes_them(
    emu: DiscordEmulator, world: World, bot: TinyBot, tmp_path
):
    """on_event callbacks see each new line; save() writes the whole transcript."""
    seen: list[str] = []
    emu.transcript.on_event(seen.append)
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "ping")
    await record.wait_for_response()
    assert seen == ["[#general] alice: /ping", "[#general] dreambot: pong"]
    path = emu.transcript.save(tmp_path / "transcript.txt")
    assert path.read_text().splitlines() == emu.transcript.lines
