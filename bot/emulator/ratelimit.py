"""Per-route rate limits with Discord's headers, so discord.py's bucket logic runs for real.

Each (method, route template, major parameter) is a bucket of ``limit`` requests per
``per`` seconds. Every API answer carries ``X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket``;
a client that ignores them gets a genuine 429. The default (50 per second) never
slows a test; ``DiscordEmulator.set_rate_limit(5, 5.0)`` is Discord's message-send pace.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from aiohttp import web

from bot.emulator import payloads
from bot.emulator.clock import Clock

MAJOR_PARAMETERS = ("channel_id", "guild_id", "webhook_id", "token")


@dataclass
class _Window:
    reset_at: float
    used: int = 0


class RateLimiter:
    def __init__(self, clock: Clock, *, limit: int = 50, per: float = 1.0) -> None:
        self._clock = clock
        self.limit = limit
        self.per = per
        self._windows: dict[tuple[str, str, str], _Window] = {}

    def take(self, request: web.Request, template: str) -> tuple[dict[str, str], float | None]:
        """Count one request; return its headers and, when over the limit, the wait."""
        major = "/".join(request.match_info.get(k, "") for k in MAJOR_PARAMETERS)
        key = (request.method, template, major)
        now = self._clock.now()
        window = self._windows.get(key)
        if window is None or now >= window.reset_at:
            window = self._windows[key] = _Window(reset_at=now + self.per)
        reset_after = max(window.reset_at - now, 0.001)
        over = window.used >= self.limit
        if not over:
            window.used += 1
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.limit - window.used),
            "X-RateLimit-Reset": f"{window.reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket_hash(request.method, template),
        }
        return headers, (reset_after if over else None)


def bucket_hash(method: str, template: str) -> str:
    return hashlib.sha1(f"{method} {template}".encode()).hexdigest()[:32]


def limited_response(
    retry_after: float, headers: dict[str, str], *, is_global: bool, scope: str
) -> web.Response:
    """A 429 the way Discord sends it: JSON ``retry_after`` plus headers (``Via`` included,
    without which discord.py assumes a Cloudflare ban and gives up)."""
    headers = dict(headers)
    headers.update(
        {
            "Retry-After": f"{retry_after:.3f}",
            "X-RateLimit-Scope": scope,
            "Via": "1.1 google",
        }
    )
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    body = {
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": is_global,
        "code": 0,
    }
    return payloads.respond(body, status=429, headers=headers)
