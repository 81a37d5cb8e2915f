"""Everything the fake Discord remembers, in one object shared by routes and the gateway.

State outlives gateway connections: a new client that IDENTIFYs after
``restart_gateway()`` sees the same guilds, messages and synced commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from bot.emulator import errors
from bot.emulator.cdn import Cdn
from bot.emulator.clock import Clock, Snowflakes
from bot.emulator.commands import CommandStore
from bot.emulator.models import DM_CHANNEL, Channel, Guild, Member, Message, Role, User
from bot.emulator.transcript import Transcript

if TYPE_CHECKING:
    from bot.emulator.interactions import InteractionRecord

T = TypeVar("T")

ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 51) - 1
# What @everyone may do in a new Discord server (view, send, embed, attach, history,
# reactions, external emoji, slash commands, invites, voice basics).
DEFAULT_EVERYONE = sum(1 << bit for bit in (0, 6, 10, 11, 14, 15, 16, 18, 20, 21, 25, 31))


@dataclass(frozen=True)
class Settings:
    """Knobs fixed at construction (see :class:`bot.emulator.server.DiscordEmulator`)."""

    token: str
    max_request_size: int  # bytes per request, all files together
    interaction_ttl: float  # seconds an interaction token works (Discord: 15 minutes)
    callback_deadline: float | None  # seconds to acknowledge an interaction (Discord: 3)
    attachment_url_ttl: float  # seconds a signed CDN URL works (Discord: about a day)
    nonce_window: float  # seconds a message nonce is remembered with enforce_nonce
    heartbeat_interval_ms: int


class ChangeFeed:
    """Wakes waiters whenever anything changes, so tests can wait on predicates.

    Waiters also re-check every ``poll`` seconds, for predicates over state the
    emulator does not own (the bot's own attributes, say).
    """

    poll = 0.05

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait_until(
        self, probe: Callable[[], T], timeout: float, what: str, context: Callable[[], str]
    ) -> T:
        """Return ``probe()`` once it is truthy; TimeoutError naming ``what`` otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = probe()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}\n{context()}")
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter, min(remaining, self.poll))
            except TimeoutError:
                pass


class EmulatorState:
    def __init__(self, settings: Settings, *, bot_name: str, application_id: int | None) -> None:
        self.settings = settings
        self.clock = Clock()
        self.ids = Snowflakes(self.clock)
        self.feed = ChangeFeed()
        self.transcript = Transcript()
        self.cdn = Cdn(self.clock, self.ids, ttl=settings.attachment_url_ttl)
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.channel_order: dict[int, list[int]] = {}
        self.nonces: dict[tuple[int, str], tuple[int, float]] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self.interaction_tokens: dict[str, InteractionRecord] = {}
        self.bot_user = self.add_user(bot_name, bot=True)
        self.application_id = application_id or self.bot_user.id
        self.owner = self.add_user("app-owner")
        self.commands = CommandStore(self.ids, self.application_id)

    def changed(self) -> None:
        self.feed.notify()

    # -- setup ---------------------------------------------------------------

    def add_user(self, username: str, *, bot: bool = False, global_name: str | None = None) -> User:
        u = User(id=self.ids.next(), username=username, bot=bot, global_name=global_name)
        self.users[u.id] = u
        return u

    def add_guild(self, name: str, *, owner: User | None, bot_permissions: int, locale: str) -> Guild:
        gid = self.ids.next()
        g = Guild(id=gid, name=name, owner_id=(owner or self.owner).id, locale=locale)
        g.roles[gid] = Role(id=gid, name="@everyone", permissions=DEFAULT_EVERYONE)
        bot_role = self.add_role(g, self.bot_user.username, permissions=bot_permissions)
        self.add_member(g, self.bot_user, roles=[bot_role.id])
        if owner is not None:
            self.add_member(g, owner)
        self.guilds[gid] = g
        return g

    def add_role(self, g: Guild, name: str, *, permissions: int) -> Role:
        r = Role(id=self.ids.next(), name=name, permissions=permissions, position=len(g.roles))
        g.roles[r.id] = r
        return r

    def add_member(
        self, g: Guild, u: User, *, roles: list[int] | None = None, nick: str | None = None
    ) -> Member:
        m = Member(user_id=u.id, roles=list(roles or []), nick=nick, joined_at=self.clock.iso())
        g.members[u.id] = m
        return m

    def add_channel(self, g: Guild, name: str, *, topic: str | None = None, nsfw: bool = False) -> Channel:
        c = Channel(id=self.ids.next(), name=name, guild_id=g.id, position=len(g.channel_ids), topic=topic,
                    nsfw=nsfw)
        self.channels[c.id] = c
        self.channel_order[c.id] = []
        g.channel_ids.append(c.id)
        return c

    def dm_channel(self, recipient: User) -> Channel:
        for c in self.channels.values():
            if c.type == DM_CHANNEL and c.recipient_id == recipient.id:
                return c
        c = Channel(
            id=self.ids.next(), name=f"DM {recipient.username}", type=DM_CHANNEL, recipient_id=recipient.id
        )
        self.channels[c.id] = c
        self.channel_order[c.id] = []
        return c

    # -- lookups that answer like the API --------------------------------------

    def user(self, user_id: int | str) -> User:
        return _get(self.users, user_id, errors.UNKNOWN_USER, "User")

    def guild(self, guild_id: int | str) -> Guild:
        return _get(self.guilds, guild_id, errors.UNKNOWN_GUILD, "Guild")

    def channel(self, channel_id: int | str) -> Channel:
        return _get(self.channels, channel_id, errors.UNKNOWN_CHANNEL, "Channel")

    def message(self, channel_id: int | str, message_id: int | str) -> Message:
        msg = _get(self.messages, message_id, errors.UNKNOWN_MESSAGE, "Message")
        if msg.deleted or msg.channel_id != int(channel_id) or msg.ephemeral:
            raise errors.not_found(errors.UNKNOWN_MESSAGE, "Message")
        return msg

    def member(self, g: Guild, user_id: int | str) -> Member:
        return _get(g.members, user_id, errors.UNKNOWN_MEMBER, "Member")

    def permissions(self, g: Guild, user_id: int) -> int:
        """Guild-level permissions as Discord computes them (no channel overwrites)."""
        if user_id == g.owner_id:
            return ALL_PERMISSIONS
        value = g.everyone.permissions
        for role_id in g.members[user_id].roles:
            value |= g.roles[role_id].permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def channel_messages(self, channel_id: int, *, include_ephemeral: bool = False) -> list[Message]:
        msgs = (self.messages[mid] for mid in self.channel_order.get(int(channel_id), []))
        return [m for m in msgs if not m.deleted and (include_ephemeral or not m.ephemeral)]

    def store_message(self, msg: Message) -> None:
        self.messages[msg.id] = msg
        self.channel_order.setdefault(msg.channel_id, []).append(msg.id)

    def channel_label(self, channel_id: int | None) -> str:
        c = self.channels.get(channel_id or 0)
        return c.label if c is not None else f"#{channel_id}"


def _get(table: dict[int, T], key: int | str, code: int, what: str) -> T:
    try:
        return table[int(key)]
    except (KeyError, ValueError):
        raise errors.not_found(code, what) from None
