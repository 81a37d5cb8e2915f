"""point_discord_py_at: where discord.py sends REST calls and opens the gateway."""

from __future__ import annotations

import discord.gateway
import discord.http
import pytest
import yarl

from bot.emulator import point_discord_py_at


def test_point_and_restore():
    """Both endpoints are patched, and the returned function puts the old ones back."""
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    restore = point_discord_py_at("http://127.0.0.1:9/api/v10", "ws://127.0.0.1:9/gateway")
    try:
        assert discord.http.Route("GET", "/users/@me").url == "http://127.0.0.1:9/api/v10/users/@me"
        assert discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY == yarl.URL("ws://127.0.0.1:9/gateway")
    finally:
        restore()
    assert (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == before


def test_trailing_slash_is_refused():
    """Route URLs are BASE + '/path', so a trailing slash would double up."""
    with pytest.raises(ValueError):
        point_discord_py_at("http://127.0.0.1:9/api/v10/")
