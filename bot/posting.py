"""Sending images within Discord's limits: fitted to the upload limit, shrunk again on a 413."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord

from bot.images import fit_image

log = logging.getLogger(__name__)

MAX_FILES = 10  # per message
MIB = 1 << 20
REQUEST_LIMIT = 25 * MIB  # all files of one message together
SHRINK_TRIES = 4


def mention_only(user_id: int | None) -> discord.AllowedMentions:
    """Ping the one user a result is for, never roles or @everyone."""
    if not user_id:
        return discord.AllowedMentions.none()
    return discord.AllowedMentions(everyone=False, roles=False, replied_user=False, users=[discord.Object(user_id)])


def fitted_files(blobs: Sequence[bytes], limit_bytes: int, name: str,
                 spoilers: Sequence[bool] = ()) -> list[discord.File]:
    """The blobs fitted under the limits; `spoilers[i]` hides blob i behind a spoiler (SPOILER_ name)."""
    per_file = min(limit_bytes, REQUEST_LIMIT // max(1, len(blobs)))
    out = []
    for n, data in enumerate(blobs[:MAX_FILES], start=1):
        fitted, filename = fit_image(data, per_file, name=name if len(blobs) == 1 else f"{name}-{n}")
        spoiler = n <= len(spoilers) and bool(spoilers[n - 1])
        out.append(discord.File(io.BytesIO(fitted), filename=filename, spoiler=spoiler))
    return out


async def _shrinking(call: Callable[[list[discord.File]], Awaitable[Any]], blobs: Sequence[bytes],
                     limit_mb: int, name: str, spoilers: Sequence[bool] = ()) -> Any:
    """Call with fitted files; on 413 (the server's limit is lower than ours) halve the limit and retry."""
    limit = limit_mb * MIB
    for attempt in range(SHRINK_TRIES):
        files = await asyncio.to_thread(fitted_files, blobs, limit, name, spoilers)
        largest = max((len(f.fp.getbuffer()) for f in files), default=0)
        try:
            return await call(files)
        except discord.HTTPException as exc:
            if exc.status != 413 or attempt == SHRINK_TRIES - 1:
                raise
            limit = min(limit, largest) // 2
            log.info("upload refused as too large; retrying with files under %d KiB", limit // 1024)


async def send_images(send: Callable[..., Awaitable[discord.Message]], blobs: Sequence[bytes], *, limit_mb: int,
                      content: str, name: str, nonce: str | None = None, view: discord.ui.View | None = None,
                      mention: int | None = None, spoilers: Sequence[bool] = ()) -> discord.Message:
    """`channel.send` the images (fitted) with content, a nonce and buttons; `spoilers` as in fitted_files."""
    extra: dict[str, Any] = {"allowed_mentions": mention_only(mention)}
    if nonce is not None:
        extra["nonce"] = nonce
    if view is not None:
        extra["view"] = view
    return await _shrinking(lambda files: send(content=content, files=files, **extra), blobs, limit_mb, name,
                            spoilers)


async def edit_with_images(webhook: discord.Webhook, message_id: int, blobs: Sequence[bytes], *, limit_mb: int,
                           content: str, name: str, view: discord.ui.View | None = None,
                           spoilers: Sequence[bool] = ()) -> discord.Message:
    """Replace a reply's content and files (an edit is idempotent: a repeat changes nothing)."""
    extra: dict[str, Any] = {"view": view} if view is not None else {}
    return await _shrinking(lambda files: webhook.edit_message(message_id, content=content, attachments=files,
                                                               **extra), blobs, limit_mb, name, spoilers)


def interaction_webhook(bot: discord.Client, application_id: int, token: str) -> discord.Webhook:
    """The webhook of an earlier interaction, as `Interaction.followup` builds it (works 15 minutes)."""
    data = {"id": application_id, "type": 3, "token": token}
    return discord.Webhook.from_state(data=data, state=bot._connection)  # noqa: SLF001 - as discord.py does
