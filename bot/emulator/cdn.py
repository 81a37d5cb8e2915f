"""The attachment CDN: bytes behind signed, expiring URLs like Discord's.

A URL looks like ``http://127.0.0.1:PORT/attachments/<channel>/<id>/<name>?ex=..&is=..&hm=..``
(``/ephemeral-attachments/<app>/<id>/<name>`` for files a user attached to a slash
command). ``ex`` is the expiry in hex seconds and ``hm`` an HMAC over the rest; an
expired or tampered URL answers 404, so a bot has to download attachments when it
receives them, not later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote

from aiohttp import web

from bot.emulator.clock import Clock, Snowflakes
from bot.emulator.models import Attachment
from bot.emulator.multipart import image_size

GONE = "This content is no longer available."


class Cdn:
    def __init__(self, clock: Clock, ids: Snowflakes, *, ttl: float) -> None:
        self._clock = clock
        self._ids = ids
        self._secret = secrets.token_bytes(16)
        self._files: dict[int, tuple[str, Attachment]] = {}
        self.ttl = ttl
        self.base = ""  # http://127.0.0.1:PORT once the server listens
        self.downloads: list[tuple[str, int]] = []  # (path, status) per request, for tests

    def store(
        self,
        *,
        owner_id: int,
        filename: str,
        data: bytes,
        content_type: str,
        ephemeral: bool = False,
        description: str | None = None,
    ) -> Attachment:
        """Keep ``data`` and return an Attachment whose ``url`` is freshly signed."""
        attachment_id = self._ids.next()
        prefix = "ephemeral-attachments" if ephemeral else "attachments"
        path = f"/{prefix}/{owner_id}/{attachment_id}/{quote(filename)}"
        size = image_size(data, content_type)
        attachment = Attachment(
            id=attachment_id,
            filename=filename,
            content_type=content_type,
            data=data,
            description=description,
            width=size[0] if size else None,
            height=size[1] if size else None,
            ephemeral=ephemeral,
        )
        self._files[attachment_id] = (path, attachment)
        self.resign(attachment)
        return attachment

    def resign(self, attachment: Attachment) -> str:
        """Give the attachment a URL valid for ``ttl`` from now (Discord re-signs on every fetch)."""
        path, _ = self._files[attachment.id]
        issued = int(self._clock.now())
        expires = issued + int(self.ttl)
        query = f"ex={expires:x}&is={issued:x}"
        attachment.url = f"{self.base}{path}?{query}&hm={self._sign(path, query)}&"
        return attachment.url

    def _sign(self, path: str, query: str) -> str:
        return hmac.new(self._secret, f"{path}?{query}".encode(), hashlib.sha256).hexdigest()

    async def serve(self, request: web.Request) -> web.Response:
        attachment = self._lookup(request)
        self.downloads.append((request.path, 200 if attachment else 404))
        if attachment is None:
            return web.Response(status=404, text=GONE)
        return web.Response(body=attachment.data, headers={"Content-Type": attachment.content_type})

    def _lookup(self, request: web.Request) -> Attachment | None:
        try:
            path, attachment = self._files[int(request.match_info["attachment_id"])]
            expires = int(request.query["ex"], 16)
            query = f"ex={request.query['ex']}&is={request.query['is']}"
            signature = request.query["hm"]
        except (KeyError, ValueError):
            return None
        if request.match_info["filename"] != attachment.filename:
            return None
        if not hmac.compare_digest(self._sign(path, query), signature) or self._clock.now() > expires:
            return None
        return attachment

    def register(self, router: web.UrlDispatcher) -> None:
        for prefix in ("attachments", "ephemeral-attachments"):
            router.add_get(f"/{prefix}/{{owner_id}}/{{attachment_id}}/{{filename}}", self.serve)
