"""Downloading a command's attachments at once (their URLs expire); storage.intake checks them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import aiohttp
import discord

from storage import photos
from storage.config import PhotoLimits
from storage.errors import PhotoRejected
from storage.intake import Upload

log = logging.getLogger(__name__)


async def download(attachments: Sequence[tuple[str, discord.Attachment]], limits: PhotoLimits
                   ) -> list[Upload | PhotoRejected]:
    """Every attachment's bytes (size-checked before the download), in order; refusals in place."""
    async def one(label: str, a: discord.Attachment) -> Upload | PhotoRejected:
        shown = f"{label} ({photos.shown_name(a.filename)})"
        try:
            photos.check_file_size(a.size, filename=a.filename, limits=limits)
            data = await a.read()
        except PhotoRejected as exc:
            return PhotoRejected(f"{label}: {exc}")
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            # Only the kind of failure: an attachment URL is signed and must never reach the logs.
            log.info("could not download %s: %s %s", shown, type(exc).__name__, getattr(exc, "status", ""))
            return PhotoRejected(f"{shown}: the upload could not be downloaded. Attach it again.")
        return Upload(label=shown, filename=a.filename, content_type=a.content_type, data=data)

    return list(await asyncio.gather(*(one(label, a) for label, a in attachments)))

