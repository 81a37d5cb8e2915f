"""Request bodies as Discord accepts them: JSON, or multipart with ``payload_json`` and ``files[n]``.

Discord's upload limit is per file (10 MiB for a bot in a server without boosts) and
25 MiB per request; either one exceeded answers 413 with code 40005.
"""

from __future__ import annotations

import io
import json
import mimetypes
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.emulator import errors

FILE_FIELD = re.compile(r"^files\[(\d+)\]$|^file(\d*)$")


@dataclass(frozen=True)
class Upload:
    index: int
    filename: str
    content_type: str
    data: bytes


async def read_body(
    request: web.Request, *, file_limit: int, request_limit: int
) -> tuple[dict[str, Any], list[Upload]]:
    """Parse a REST body into (payload, uploads), answering 413 for oversized files."""
    if not request.content_type.startswith("multipart/"):
        raw = await request.read()
        if len(raw) > request_limit:
            raise errors.too_large()
        return _json(raw) if raw else {}, []
    payload: dict[str, Any] = {}
    uploads: list[Upload] = []
    total = 0
    reader = await request.multipart()
    async for part in reader:
        data = await part.read(decode=False)
        total += len(data)
        if total > request_limit:
            raise errors.too_large()
        if part.name == "payload_json":
            payload = _json(data)
            continue
        match = FILE_FIELD.match(part.name or "")
        if match is None:
            continue
        if len(data) > file_limit:
            raise errors.too_large()
        filename = part.filename or f"file{len(uploads)}"
        index = int(match.group(1) if match.group(1) is not None else (match.group(2) or len(uploads)))
        uploads.append(
            Upload(index, filename, _content_type(part.headers.get("Content-Type"), filename), data)
        )
    return payload, uploads


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise errors.ApiError(400, 50109, "The request body contains invalid JSON.") from None
    if not isinstance(value, (dict, list)):
        raise errors.ApiError(400, 50109, "The request body contains invalid JSON.")
    return value


def _content_type(declared: str | None, filename: str) -> str:
    """Discord ignores a generic declared type and sniffs from the name, like this."""
    if declared and declared != "application/octet-stream":
        return declared
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def image_size(data: bytes, content_type: str) -> tuple[int, int] | None:
    """Width and height for images (Discord sends them on image attachments)."""
    if not content_type.startswith("image/"):
        return None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None
