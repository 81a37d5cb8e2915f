"""REST routes for users, the application, the gateway URL, guilds, channels and messages."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.emulator import errors, payloads
from bot.emulator.gateway import GatewayHub
from bot.emulator.messages import MessageService
from bot.emulator.models import Channel, Message
from bot.emulator.multipart import read_body
from bot.emulator.state import EmulatorState

VIEW_CHANNEL, SEND_MESSAGES, MANAGE_MESSAGES, ATTACH_FILES = 1 << 10, 1 << 11, 1 << 13, 1 << 15


class RestRoutes:
    def __init__(self, state: EmulatorState, hub: GatewayHub, messages: MessageService, faults: Any) -> None:
        self._state = state
        self._hub = hub
        self._messages = messages
        self._faults = faults

    def register(self, router: web.UrlDispatcher, prefix: str) -> None:
        r = router
        r.add_get(prefix + "/gateway", self.gateway)
        r.add_get(prefix + "/gateway/bot", self.gateway_bot)
        r.add_get(prefix + "/users/@me", self.me)
        r.add_post(prefix + "/users/@me/channels", self.open_dm)
        r.add_get(prefix + "/users/{user_id}", self.get_user)
        r.add_get(prefix + "/oauth2/applications/@me", self.application)
        r.add_get(prefix + "/applications/@me", self.application)
        r.add_get(prefix + "/guilds/{guild_id}", self.get_guild)
        r.add_get(prefix + "/guilds/{guild_id}/channels", self.guild_channels)
        r.add_get(prefix + "/guilds/{guild_id}/roles", self.guild_roles)
        r.add_get(prefix + "/guilds/{guild_id}/members", self.guild_members)
        r.add_get(prefix + "/guilds/{guild_id}/members/{user_id}", self.guild_member)
        r.add_get(prefix + "/channels/{channel_id}", self.get_channel)
        r.add_post(prefix + "/channels/{channel_id}/typing", self.typing)
        r.add_get(prefix + "/channels/{channel_id}/messages", self.list_messages)
        r.add_post(prefix + "/channels/{channel_id}/messages", self.create_message)
        r.add_get(prefix + "/channels/{channel_id}/messages/{message_id}", self.get_message)
        r.add_patch(prefix + "/channels/{channel_id}/messages/{message_id}", self.edit_message)
        r.add_delete(prefix + "/channels/{channel_id}/messages/{message_id}", self.delete_message)

    # -- users, application, gateway -------------------------------------------

    async def gateway(self, request: web.Request) -> web.Response:
        return payloads.respond({"url": self._hub.url})

    async def gateway_bot(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return payloads.respond({"url": self._hub.url, "shards": self._hub.recommended_shards,
                                 "session_start_limit": limit})

    async def me(self, request: web.Request) -> web.Response:
        data = payloads.user(self._state.bot_user) | {"verified": True, "mfa_enabled": False, "flags": 0}
        return payloads.respond(data)

    async def get_user(self, request: web.Request) -> web.Response:
        return payloads.respond(payloads.user(self._state.user(request.match_info["user_id"])))

    async def open_dm(self, request: web.Request) -> web.Response:
        body, _ = await read_body(request, file_limit=0, request_limit=1 << 20)
        recipient = self._state.user(body.get("recipient_id", 0))
        return payloads.respond(payloads.channel(self._state.dm_channel(recipient), self._state))

    async def application(self, request: web.Request) -> web.Response:
        state = self._state
        return payloads.respond(
            {
                "id": str(state.application_id),
                "name": state.bot_user.username,
                "icon": None,
                "description": "",
                "summary": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": payloads.user(state.owner),
                "bot": payloads.user(state.bot_user),
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "interactions_endpoint_url": None,
                "redirect_uris": [],
            }
        )

    # -- guilds ------------------------------------------------------------------

    async def get_guild(self, request: web.Request) -> web.Response:
        g = self._state.guild(request.match_info["guild_id"])
        data = payloads.guild_create(g, self._state)
        for key in ("channels", "members", "threads", "presences", "voice_states"):
            data.pop(key)
        return payloads.respond(data)

    async def guild_channels(self, request: web.Request) -> web.Response:
        g = self._state.guild(request.match_info["guild_id"])
        return payloads.respond([payloads.channel(self._state.channels[c]) for c in g.channel_ids])

    async def guild_roles(self, request: web.Request) -> web.Response:
        g = self._state.guild(request.match_info["guild_id"])
        return payloads.respond([payloads.role(r) for r in g.roles.values()])

    async def guild_members(self, request: web.Request) -> web.Response:
        g = self._state.guild(request.match_info["guild_id"])
        limit = min(int(request.query.get("limit", 1)), 1000)
        members = [payloads.member(m, self._state.users[uid]) for uid, m in g.members.items()]
        return payloads.respond(members[:limit])

    async def guild_member(self, request: web.Request) -> web.Response:
        g = self._state.guild(request.match_info["guild_id"])
        m = self._state.member(g, request.match_info["user_id"])
        return payloads.respond(payloads.member(m, self._state.users[m.user_id]))

    # -- channels and messages -----------------------------------------------------

    async def get_channel(self, request: web.Request) -> web.Response:
        channel = self._state.channel(request.match_info["channel_id"])
        return payloads.respond(payloads.channel(channel, self._state))

    async def typing(self, request: web.Request) -> web.Response:
        self._require(self._state.channel(request.match_info["channel_id"]), SEND_MESSAGES)
        return web.Response(status=204)

    async def list_messages(self, request: web.Request) -> web.Response:
        channel = self._state.channel(request.match_info["channel_id"])
        msgs = self._state.channel_messages(channel.id)
        q = request.query
        if "before" in q:
            msgs = [m for m in msgs if m.id < int(q["before"])]
        if "after" in q:
            msgs = [m for m in msgs if m.id > int(q["after"])]
        limit = max(1, min(int(q.get("limit", 50)), 100))
        newest_first = list(reversed(msgs))[:limit] if "after" not in q else list(reversed(msgs[:limit]))
        return payloads.respond([payloads.message(m, self._state) for m in newest_first])

    async def create_message(self, request: web.Request) -> web.Response:
        state = self._state
        channel = state.channel(request.match_info["channel_id"])
        body, uploads = await read_body(
            request, file_limit=self._faults.upload_limit, request_limit=state.settings.max_request_size
        )
        self._require(channel, SEND_MESSAGES | (ATTACH_FILES if uploads else 0))
        existing = self._deduplicate(body)
        if existing is not None:
            state.transcript.add(f"[{channel.label}] (duplicate nonce {existing.nonce}: no new message)")
            return payloads.respond(payloads.message(existing, state))
        msg = self._messages.create(channel, state.bot_user, body, uploads)
        if msg.nonce is not None and body.get("enforce_nonce"):
            state.nonces[(msg.author_id, msg.nonce)] = (msg.id, msg.created_at)
        return payloads.respond(payloads.message(msg, state))

    async def get_message(self, request: web.Request) -> web.Response:
        msg = self._state.message(request.match_info["channel_id"], request.match_info["message_id"])
        return payloads.respond(payloads.message(msg, self._state))

    async def edit_message(self, request: web.Request) -> web.Response:
        state = self._state
        msg = state.message(request.match_info["channel_id"], request.match_info["message_id"])
        body, uploads = await read_body(
            request, file_limit=self._faults.upload_limit, request_limit=state.settings.max_request_size
        )
        if msg.author_id != state.bot_user.id:
            raise errors.ApiError(
                403, errors.CANNOT_EDIT_OTHERS_MESSAGE, "Cannot edit a message authored by another user"
            )
        return payloads.respond(payloads.message(self._messages.edit(msg, body, uploads), self._state))

    async def delete_message(self, request: web.Request) -> web.Response:
        channel = self._state.channel(request.match_info["channel_id"])
        msg = self._state.message(channel.id, request.match_info["message_id"])
        if msg.author_id != self._state.bot_user.id:
            self._require(channel, MANAGE_MESSAGES)
        self._messages.delete(msg)
        return web.Response(status=204)

    def _deduplicate(self, body: dict[str, Any]) -> Message | None:
        """Discord's enforce_nonce: the same author and nonce within the window returns the first message."""
        nonce = body.get("nonce")
        if nonce is None or not body.get("enforce_nonce"):
            return None
        state = self._state
        found = state.nonces.get((state.bot_user.id, str(nonce)))
        if found is None or state.clock.now() - found[1] > state.settings.nonce_window:
            return None
        msg = state.messages[found[0]]
        return None if msg.deleted else msg

    def _require(self, channel: Channel, needed: int) -> None:
        if channel.guild_id is None:
            return
        g = self._state.guilds[channel.guild_id]
        have = self._state.permissions(g, self._state.bot_user.id)
        if (have & (needed | VIEW_CHANNEL)) != (needed | VIEW_CHANNEL):
            raise errors.ApiError(403, 50013, "Missing Permissions")
