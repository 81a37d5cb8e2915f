"""Interaction callback and webhook rules checked over raw HTTP, as Discord answers them."""

from __future__ import annotations

import aiohttp
import pytest

from bot.emulator import DiscordEmulator
from tests.bot.emulator.conftest import World
from tests.bot.emulator.tiny_bot import TinyBot


async def call(method: str, url: str, body: dict | None = None) -> tuple[int, dict | str]:
    async with aiohttp.ClientSession() as session, session.request(method, url, json=body) as response:
        data = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, data


async def test_second_acknowledgement_is_40060(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Answering an interaction the bot already answered is 400 / 40060."""
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "ping")
    await record.wait_for_response()
    url = f"{emu.api_base}/interactions/{record.id}/{record.token}/callback"
    status, body = await call("POST", url, {"type": 4, "data": {"content": "again"}})
    assert (status, body["code"]) == (400, 40060)


async def test_unknown_webhook_token_is_401_50027(emu: DiscordEmulator):
    """A follow-up with a token Discord never issued is 401 / 50027."""
    status, body = await call("POST", f"{emu.api_base}/webhooks/{emu.application_id}/nope", {"content": "x"})
    assert (status, body) == (401, {"code": 50027, "message": "Invalid Webhook Token"})


@pytest.mark.parametrize("message_id", ["@original", "1"])
async def test_missing_webhook_message_is_404_10008(
    emu: DiscordEmulator, world: World, bot: TinyBot, message_id
):
    """@original of an unanswered-with-a-message interaction, or a foreign id, is 404 / 10008."""
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "report")
    await record.wait_for_response()
    url = f"{emu.api_base}/webhooks/{emu.application_id}/{record.token}/messages/{message_id}"
    status, body = await call("GET", url)
    assert (status, body["code"]) == (404, 10008)


async def test_rest_without_the_bot_token_is_401(emu: DiscordEmulator):
    """Bot routes need ``Authorization: Bot <token>``."""
    status, body = await call("GET", f"{emu.api_base}/users/@me")
    assert (status, body["code"]) == (401, 0)


async def test_unimplemented_route_is_a_json_404_in_the_transcript(emu: DiscordEmulator):
    """A route the emulator lacks answers JSON 404 and is named in the transcript."""
    status, _ = await call("GET", f"{emu.api_base}/stickers/1")
    assert status == 404
    assert "[api] 404 no such route: GET /stickers/1" in emu.transcript.lines
