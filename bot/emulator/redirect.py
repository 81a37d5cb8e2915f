"""Point the real discord.py at another Discord (the emulator, or any base URL).

discord.py has no setting for its endpoints, so this patches the two class
attributes it reads:

* ``discord.http.Route.BASE`` -- every REST call, including the interaction webhook
  (``discord/webhook/async_.py`` imports the same ``Route``), is ``BASE + path``;
* ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` -- ``Client.connect()`` opens
  this URL (with ``?v=10&encoding=json&compress=zlib-stream``); it never asks
  ``GET /gateway/bot`` (only ``AutoShardedClient`` does, for the shard count).

Both are process-wide, so call this before the client logs in and undo it after::

    restore = point_discord_py_at(emu.api_base, emu.gateway_url)
    try:
        ...
    finally:
        restore()

The bot does the same from ``[bot] api_base`` / ``gateway_url`` in config.toml.
"""

from __future__ import annotations

from collections.abc import Callable

import discord.gateway
import discord.http
import yarl

DISCORD_API_BASE = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg/"


def point_discord_py_at(api_base: str, gateway_url: str | None = None) -> Callable[[], None]:
    """Send discord.py's REST calls to ``api_base`` and its gateway to ``gateway_url``.

    Returns a function that puts back the previous values.
    """
    if not api_base.startswith(("http://", "https://")) or api_base.endswith("/"):
        raise ValueError(
            f"api_base must be an http(s) URL without a trailing slash, like {DISCORD_API_BASE!r}"
        )
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = api_base
    if gateway_url is not None:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)

    def restore() -> None:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    return restore
