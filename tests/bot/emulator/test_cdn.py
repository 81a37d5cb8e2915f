"""The attachment CDN: signed URLs that serve the registered bytes until they expire."""

from __future__ import annotations

import aiohttp
import pytest

from bot.emulator import DiscordEmulator


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


@pytest.fixture
def photo(emu: DiscordEmulator):
    return emu.state.cdn.store(
        owner_id=1, filename="rex 1.jpg", data=b"jpeg bytes", content_type="image/jpeg"
    )


async def test_signed_url_serves_the_bytes(emu: DiscordEmulator, photo):
    """A fresh URL answers 200 with the stored bytes."""
    assert await fetch(photo.url) == (200, b"jpeg bytes")


async def test_expired_url_is_404(emu: DiscordEmulator, photo):
    """Once the clock passes ``ex`` the URL answers 404, so bots must download promptly."""
    emu.clock.advance(emu.state.cdn.ttl + 1)
    assert (await fetch(photo.url))[0] == 404


async def test_tampered_signature_is_404(emu: DiscordEmulator, photo):
    """Changing the expiry without re-signing is refused."""
    url = photo.url.replace("ex=", "ex=f")
    assert (await fetch(url))[0] == 404


async def test_refetched_message_gets_a_fresh_url(emu: DiscordEmulator, photo):
    """Re-signing (done whenever a message is serialised) makes an expired attachment reachable again."""
    emu.clock.advance(emu.state.cdn.ttl + 1)
    assert await fetch(emu.state.cdn.resign(photo)) == (200, b"jpeg bytes")
