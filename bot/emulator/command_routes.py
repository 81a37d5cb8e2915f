"""REST routes for application commands, global and per guild (what ``tree.sync()`` calls)."""

from __future__ import annotations

from aiohttp import web

from bot.emulator import errors, payloads
from bot.emulator.multipart import read_body
from bot.emulator.state import EmulatorState

BODY_LIMIT = 4 * 1024 * 1024


class CommandRoutes:
    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    def register(self, router: web.UrlDispatcher, prefix: str) -> None:
        for scope in ("/applications/{application_id}", "/applications/{application_id}/guilds/{guild_id}"):
            base = prefix + scope + "/commands"
            router.add_get(base, self.list)
            router.add_put(base, self.replace)
            router.add_post(base, self.upsert)
            router.add_get(base + "/{command_id}", self.get)
            router.add_patch(base + "/{command_id}", self.edit)
            router.add_delete(base + "/{command_id}", self.delete)

    def _scope(self, request: web.Request) -> int | None:
        if request.match_info["application_id"] != str(self._state.application_id):
            raise errors.ApiError(403, 50001, "Missing Access")
        guild_id = request.match_info.get("guild_id")
        if guild_id is None:
            return None
        return self._state.guild(guild_id).id

    async def list(self, request: web.Request) -> web.Response:
        return payloads.respond(self._state.commands.list(self._scope(request)))

    async def replace(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        body, _ = await read_body(request, file_limit=0, request_limit=BODY_LIMIT)
        synced = self._state.commands.replace(scope, body)
        where = f"guild {self._state.guilds[scope].name}" if scope else "global"
        names = ", ".join(f"/{c['name']}" for c in synced) or "none"
        self._state.transcript.add(f"[commands] synced {len(synced)} {where} command(s): {names}")
        self._state.changed()
        return payloads.respond(synced)

    async def upsert(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        body, _ = await read_body(request, file_limit=0, request_limit=BODY_LIMIT)
        command = self._state.commands.upsert(scope, body)
        self._state.changed()
        return payloads.respond(command, status=201)

    async def get(self, request: web.Request) -> web.Response:
        return payloads.respond(
            self._state.commands.get(self._scope(request), request.match_info["command_id"])
        )

    async def edit(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        body, _ = await read_body(request, file_limit=0, request_limit=BODY_LIMIT)
        command = self._state.commands.edit(scope, request.match_info["command_id"], body)
        self._state.changed()
        return payloads.respond(command)

    async def delete(self, request: web.Request) -> web.Response:
        self._state.commands.delete(self._scope(request), request.match_info["command_id"])
        self._state.changed()
        return web.Response(status=204)
