"""Counting failed Discord API requests (dreambot_discord_api_errors_total) by status and route template.

discord.py sends REST calls through two clients: the bot's HTTPClient (channels, messages, commands)
and the webhook adapter (interaction responses, follow-ups and their edits). Both are wrapped once,
process-wide, like `endpoints.use`; the label is the route's template, never its ids or tokens.
"""

from __future__ import annotations

import functools

import aiohttp
import discord
import discord.http
import discord.webhook.async_

from storage import metrics

_WRAPPED = "_dreambot_counts_errors"


def count() -> None:
    """Wrap HTTPClient.request and the webhook adapter's request (once; later calls do nothing)."""
    for owner in (discord.http.HTTPClient, discord.webhook.async_.AsyncWebhookAdapter):
        if not getattr(owner.request, _WRAPPED, False):
            owner.request = _counted(owner.request)


def route_label(route: discord.http.Route) -> str:
    return f"{route.method} {route.path}"


def _counted(request):
    @functools.wraps(request)
    async def counted(self, route, *args, **kwargs):
        try:
            return await request(self, route, *args, **kwargs)
        except discord.HTTPException as exc:
            metrics.DISCORD_API_ERRORS.labels(status=str(exc.status), route=route_label(route)).inc()
            raise
        except (aiohttp.ClientError, OSError):
            metrics.DISCORD_API_ERRORS.labels(status="network", route=route_label(route)).inc()
            raise

    setattr(counted, _WRAPPED, True)
    return counted
