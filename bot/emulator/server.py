"""``DiscordEmulator``: a fake Discord on 127.0.0.1 that the real discord.py client talks to.

::

    async with DiscordEmulator(token="emulated-token") as emu:
        guild = emu.add_guild("dreamers")            # with #general, the bot and @everyone
        channel = emu.channel_named(guild, "general")
        alice = emu.add_member(guild, "alice")
        restore = point_discord_py_at(emu.api_base, emu.gateway_url)
        ...  # client.login(token); client.connect(); wait for on_ready
        record = await emu.invoke_slash(guild.id, channel.id, alice, "train",
                                        options={"name": "rex"}, attachments=[("a.jpg", data, "image/jpeg")])
        await record.wait_for_response()

Routes live in ``rest.py``, ``command_routes.py``, ``webhook_routes.py``, ``cdn.py`` and
``gateway.py``; this module wires them, adds auth, rate-limit headers and injected
faults in one middleware, and offers the setup and scripted-user API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from bot.emulator import errors, payloads
from bot.emulator.clock import Clock
from bot.emulator.command_routes import CommandRoutes
from bot.emulator.faults import DEFAULT_UPLOAD_LIMIT, Faults
from bot.emulator.gateway import GatewayHub
from bot.emulator.interactions import InteractionRecord
from bot.emulator.messages import MessageService
from bot.emulator.models import Channel, Guild, Message, Role, User
from bot.emulator.ratelimit import RateLimiter, limited_response
from bot.emulator.rest import RestRoutes
from bot.emulator.scripted import ScriptedUsers
from bot.emulator.state import DEFAULT_EVERYONE, EmulatorState, Settings
from bot.emulator.transcript import Transcript
from bot.emulator.webhook_routes import WebhookRoutes

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
DEFAULT_TOKEN = "emulated.bot.token"
MANAGE_MESSAGES = 1 << 13
DEFAULT_BOT_PERMISSIONS = DEFAULT_EVERYONE | MANAGE_MESSAGES


class DiscordEmulator:
    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_name: str = "dreambot",
        application_id: int | None = None,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        max_request_size: int = 25 * 1024 * 1024,
        interaction_ttl: float = 15 * 60,
        callback_deadline: float | None = 3.0,
        attachment_url_ttl: float = 24 * 3600,
        nonce_window: float = 5 * 60,
        heartbeat_interval_ms: int = 41_250,
        privileged_intents: int = 0,
        rate_limit: tuple[int, float] = (50, 1.0),
        on_event: Callable[[str], Any] | None = None,
    ) -> None:
        settings = Settings(
            token=token,
            max_request_size=max_request_size,
            interaction_ttl=interaction_ttl,
            callback_deadline=callback_deadline,
            attachment_url_ttl=attachment_url_ttl,
            nonce_window=nonce_window,
            heartbeat_interval_ms=heartbeat_interval_ms,
        )
        self.state = EmulatorState(settings, bot_name=bot_name, application_id=application_id)
        self.faults = Faults()
        self.faults.upload_limit = upload_limit
        self.gateway = GatewayHub(self.state, privileged_intents=privileged_intents)
        self.rate_limits = RateLimiter(self.state.clock, limit=rate_limit[0], per=rate_limit[1])
        self.messages = MessageService(self.state, self.gateway.dispatch)
        self.scripted = ScriptedUsers(self.state, self.gateway, self.faults)
        self.internal_errors: list[BaseException] = []
        if on_event is not None:
            self.state.transcript.on_event(on_event)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> DiscordEmulator:
        app = web.Application(
            middlewares=[self._middleware], client_max_size=self.state.settings.max_request_size * 2
        )
        RestRoutes(self.state, self.gateway, self.messages, self.faults).register(app.router, API_PREFIX)
        CommandRoutes(self.state).register(app.router, API_PREFIX)
        WebhookRoutes(self.state, self.messages, self.faults).register(app.router, API_PREFIX)
        self.state.cdn.register(app.router)
        app.router.add_get("/gateway", self.gateway.handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.state.cdn.base = f"http://{host}:{self.port}"
        self.gateway.url = f"ws://{host}:{self.port}/gateway"
        return self

    async def stop(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_base(self) -> str:
        return f"{self.state.cdn.base}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return self.gateway.url

    @property
    def token(self) -> str:
        return self.state.settings.token

    @property
    def bot_user(self) -> User:
        return self.state.bot_user

    @property
    def application_id(self) -> int:
        return self.state.application_id

    @property
    def clock(self) -> Clock:
        return self.state.clock

    @property
    def transcript(self) -> Transcript:
        return self.state.transcript

    # -- setup ---------------------------------------------------------------------------

    def add_guild(
        self,
        name: str = "dreamers",
        *,
        channels: Sequence[str] = ("general",),
        owner: User | None = None,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        locale: str = "en-US",
    ) -> Guild:
        """A guild with @everyone, the bot as a member (its own role) and the named text channels."""
        g = self.state.add_guild(name, owner=owner, bot_permissions=bot_permissions, locale=locale)
        for channel in channels:
            self.state.add_channel(g, channel)
        self.gateway.dispatch("GUILD_CREATE", payloads.guild_create(g, self.state))
        return g

    def add_channel(
        self, guild: Guild | int, name: str, *, topic: str | None = None, nsfw: bool = False
    ) -> Channel:
        """A new text channel; ``nsfw`` makes it age-restricted, as Discord's channel setting does."""
        g = self.state.guild(_id(guild))
        channel = self.state.add_channel(g, name, topic=topic, nsfw=nsfw)
        self.gateway.dispatch("CHANNEL_CREATE", payloads.channel(channel))
        return channel

    def set_age_restricted(self, channel: Channel | int, nsfw: bool = True) -> None:
        """Change a channel's age restriction, as a server admin would; clients get CHANNEL_UPDATE."""
        found = self.state.channel(_id(channel))
        found.nsfw = nsfw
        self.transcript.add(f"[emulator] {found.label} is {'now' if nsfw else 'no longer'} age-restricted")
        self.gateway.dispatch("CHANNEL_UPDATE", payloads.channel(found))
        self.state.changed()

    def channel_named(self, guild: Guild | int, name: str) -> Channel:
        g = self.state.guild(_id(guild))
        return next(c for c in map(self.state.channels.get, g.channel_ids) if c and c.name == name)

    def add_role(self, guild: Guild | int, name: str, *, permissions: int = 0) -> Role:
        g = self.state.guild(_id(guild))
        role = self.state.add_role(g, name, permissions=permissions)
        self.gateway.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(g.id), "role": payloads.role(role)})
        return role

    def add_member(
        self,
        guild: Guild | int,
        username: str,
        *,
        roles: Sequence[Role | int] = (),
        nick: str | None = None,
        global_name: str | None = None,
        locale: str = "en-US",
    ) -> User:
        """A new user who is a member of ``guild`` (with ``roles``); returns the User."""
        g = self.state.guild(_id(guild))
        user = self.state.add_user(username, global_name=global_name)
        user.locale = locale
        member = self.state.add_member(g, user, roles=[_id(r) for r in roles], nick=nick)
        data = payloads.member(member, user) | {"guild_id": str(g.id)}
        self.gateway.dispatch("GUILD_MEMBER_ADD", data)
        return user

    def set_rate_limit(self, limit: int, per: float) -> None:
        """Bucket size for every route from now on (Discord's message sends: 5 per 5 s)."""
        self.rate_limits.limit, self.rate_limits.per = limit, per

    # -- reading what happened -------------------------------------------------------------

    def channel_messages(self, channel: Channel | int, *, include_ephemeral: bool = False) -> list[Message]:
        """Messages in the channel, oldest first, current versions (``msg.history`` has every edit)."""
        return self.state.channel_messages(_id(channel), include_ephemeral=include_ephemeral)

    def message(self, message_id: int) -> Message:
        return self.state.messages[message_id]

    async def wait_for_message(
        self, channel: Channel | int, predicate: Callable[[Message], Any] | None = None, timeout: float = 5.0
    ) -> Message:
        """The oldest visible message in ``channel`` matching ``predicate``, waiting up to ``timeout``."""

        def probe() -> Message | None:
            return next(
                (m for m in self.channel_messages(channel) if predicate is None or predicate(m)), None
            )

        return await self.state.feed.wait_until(
            probe, timeout, f"a message in channel {_id(channel)}", self.transcript.tail
        )

    def synced_commands(self, guild: Guild | int | None = None) -> list[dict[str, Any]]:
        """Commands the bot synced, global (``None``) or for one guild, as stored."""
        return self.state.commands.list(_id(guild) if guild is not None else None)

    def command(self, name: str, guild: Guild | int | None = None) -> dict[str, Any]:
        return self.state.commands.find(name, _id(guild) if guild is not None else None)[0]

    async def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "a condition"
    ) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked whenever the emulator's state changes)."""
        return await self.state.feed.wait_until(predicate, timeout, what, self.transcript.tail)

    # -- scripted users ----------------------------------------------------------------------

    async def invoke_slash(
        self,
        guild_id: int | None,
        channel_id: int | None,
        user: User | int,
        name: str | Sequence[str],
        options: dict[str, Any] | None = None,
        attachments: Sequence[tuple[Any, ...]] = (),
    ) -> InteractionRecord:
        """Run ``/name`` as ``user``; ``name`` may be ``"mod review"`` or ``("mod", "review")``.

        Option values are typed from the synced command; attachment options take
        ``(filename, bytes, content_type)``, and ``attachments`` fills the free attachment
        options in order. Raises PermissionError if Discord would hide the command from the user.
        """
        return await self.scripted.invoke_slash(guild_id, channel_id, user, name, options, attachments)

    async def autocomplete(
        self,
        guild_id: int | None,
        channel_id: int | None,
        user: User | int,
        name: str | Sequence[str],
        options: dict[str, Any],
        focused: str,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Type into option ``focused`` and return the choices the bot suggests."""
        return await self.scripted.autocomplete(
            guild_id, channel_id, user, name, options, focused, timeout=timeout
        )

    async def click(
        self, message: Message | int, custom_id: str, user: User | int, *, values: Sequence[str] | None = None
    ) -> InteractionRecord:
        """Press a button (or choose ``values`` in a select) on ``message``."""
        return await self.scripted.click(message, custom_id, user, values=values)

    async def submit_modal(
        self, opened: InteractionRecord, values: dict[str, str], user: User | int | None = None
    ) -> InteractionRecord:
        """Submit the modal the bot opened in answer to ``opened``; ``values`` by input custom_id."""
        return await self.scripted.submit_modal(opened, values, user)

    def expire_interaction(self, record: InteractionRecord | str) -> None:
        """Make an interaction token invalid now (as if 15 minutes had passed for it alone)."""
        found = record if isinstance(record, InteractionRecord) else self.state.interaction_tokens[record]
        found.expires_at = self.state.clock.now()
        self.transcript.add(f"[emulator] interaction token for {found.summary!r} expired")

    # -- gateway control -------------------------------------------------------------------------

    async def wait_until_connected(self, timeout: float = 5.0) -> None:
        await self.gateway.wait_connected(timeout)

    async def wait_for_identify(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` IDENTIFYs have been accepted since the emulator started."""
        await self.wait_for(lambda: self.gateway.identify_count >= count, timeout, f"IDENTIFY #{count}")

    async def restart_gateway(self) -> None:
        """Send RECONNECT, drop every socket and forget all sessions: clients IDENTIFY anew."""
        await self.gateway.restart()

    async def disconnect_clients(self, code: int = 4000) -> None:
        """Drop every socket but keep sessions, so clients RESUME and get missed events replayed."""
        await self.gateway.disconnect(code)

    # -- middleware -------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        path = request.path[len(API_PREFIX) :]
        route = request.match_info.route.resource
        template = route.canonical[len(API_PREFIX) :] if route is not None else path
        headers, wait = self.rate_limits.take(request, template)
        headers["Via"] = "1.1 google"
        try:
            if route is not None:
                self._authenticate(request, path)
            fault = self.faults.take(request.method, path)
            if fault is not None:
                self.transcript.add(f"[emulator] injected {fault.status} on {request.method} {path}")
                return fault.response(headers)
            if wait is not None:
                self.transcript.add(f"[api] 429 rate limited: {request.method} {path} ({wait:.2f}s)")
                return limited_response(wait, headers, is_global=False, scope="user")
            response = await handler(request)
        except errors.ApiError as exc:
            self.transcript.add(f"[api] {exc.status} {exc.message} ({exc.code}) on {request.method} {path}")
            response = exc.response()
        except web.HTTPException as exc:
            self.transcript.add(f"[api] {exc.status} no such route: {request.method} {path}")
            response = payloads.respond(
                {"code": 0, "message": f"{exc.status}: {exc.reason}"}, status=exc.status
            )
        except Exception as exc:
            log.exception("emulator failed on %s %s", request.method, path)
            self.internal_errors.append(exc)
            self.transcript.add(f"[emulator] internal error on {request.method} {path}: {exc!r}")
            response = payloads.respond({"code": 0, "message": f"emulator bug: {exc!r}"}, status=500)
        response.headers.update(headers)
        return response

    def _authenticate(self, request: web.Request, path: str) -> None:
        if path.startswith("/interactions/") or (path.startswith("/webhooks/") and path.count("/") >= 3):
            return  # the interaction token in the path is the credential
        if request.headers.get("Authorization") != f"Bot {self.token}":
            raise errors.unauthorized()


def _id(thing: Any) -> int:
    return int(getattr(thing, "id", thing))
