"""Downloading a command's attachments at once (their URLs expire) and running photo intake on them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import discord

from storage import photos
from storage.config import PhotoLimits
from storage.errors import PhotoRejected

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    label: str  # how the user knows it: "photo2 (IMG_1234.jpg)"
    filename: str
    content_type: str | None
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Intake:
    accepted: list[photos.CleanPhoto]
    lines: list[str]  # one finding per photo, in the order given
    refused: int

    def refusal(self) -> PhotoRejected:
        return PhotoRejected("Some photos can't be used, so nothing was kept:\n"
                             + "\n".join(f"- {line}" for line in self.lines)
                             + "\nReplace or remove those photos and run /train again.")


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


def inspect(uploads: Sequence[Upload | PhotoRejected], limits: PhotoLimits) -> Intake:
    """Check and clean each photo, the set's size and near-duplicates (CPU work: run in a thread)."""
    lines: list[str] = []
    cleaned: list[tuple[int, str, photos.CleanPhoto]] = []
    refused = 0
    for upload in uploads:
        if isinstance(upload, PhotoRejected):
            lines.append(f"refused: {upload}")
            refused += 1
            continue
        try:
            photo = photos.inspect_photo(upload.data, filename=upload.filename, content_type=upload.content_type,
                                         limits=limits)
        except PhotoRejected as exc:
            lines.append(f"refused: {upload.label.split(' ')[0]}: {exc}")
            refused += 1
            continue
        cleaned.append((len(lines), upload.label, photo))
        lines.append("")
    labels = [label for _, label, _ in cleaned]
    found = [photo for _, _, photo in cleaned]
    marked = photos.mark_duplicates(found, photos.find_duplicates(found, limits), labels=labels)
    for (index, label, _), photo in zip(cleaned, marked, strict=True):
        note = " ".join(photo.findings) or "looks good."
        lines[index] = f"{label}: {photo.width}x{photo.height}, {note}"
    if not refused:
        photos.check_count(len(marked), limits)
    return Intake(accepted=marked, lines=lines, refused=refused)
