"""Pointing discord.py at Discord or at a Discord-compatible server (the test emulator).

discord.py keeps both addresses as class attributes, so this is process-wide.
"""

from __future__ import annotations

import discord
import discord.gateway
import discord.http
import yarl

DISCORD_API = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg"


def use(api_base: str, gateway_url: str) -> None:
    """REST calls go to api_base, the websocket to gateway_url (both from `[bot]` in config.toml)."""
    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
