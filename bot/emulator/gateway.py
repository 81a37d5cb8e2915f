"""The gateway websocket: HELLO, IDENTIFY/READY/GUILD_CREATE, heartbeats, RESUME, dispatch, sharding.

A session that IDENTIFYs with ``shard: [shard_id, shard_count]`` gets only its guilds, as Discord
does: a guild's events go to shard ``(guild_id >> 22) % shard_count``, direct messages to shard 0.
``GET /gateway/bot`` recommends ``recommended_shards`` (1 unless a test sets more).

discord.py connects to ``<gateway_url>?v=10&encoding=json&compress=zlib-stream``.
With ``zlib-stream`` every payload goes out through one zlib stream per connection,
each ending in a Z_SYNC_FLUSH, as Discord does; otherwise (``zstd-stream``, none)
payloads go out as plain text frames, which discord.py also accepts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from bot.emulator import payloads
from bot.emulator.state import EmulatorState

log = logging.getLogger(__name__)

DISPATCH, HEARTBEAT, IDENTIFY, RESUME, RECONNECT = 0, 1, 2, 6, 7
REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 8, 9, 10, 11
INVALID_SHARD = 4010
GUILDS, GUILD_MEMBERS, GUILD_PRESENCES, GUILD_MESSAGES, DIRECT_MESSAGES, MESSAGE_CONTENT = (
    1 << 0,
    1 << 1,
    1 << 8,
    1 << 9,
    1 << 12,
    1 << 15,
)
PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
BUFFERED_EVENTS = 1000


@dataclass
class Session:
    """What survives a dropped socket and lets a client RESUME."""

    id: str
    intents: int
    shard: list[int] | None
    compress: str | None  # what the client asked for: "zlib-stream" gets compressed frames
    seq: int = 0
    valid: bool = True
    sent: deque[tuple[int, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=BUFFERED_EVENTS))
    connection: Connection | None = None

    def serves(self, guild_id: int | None) -> bool:
        """Whether this session's shard gets the events of `guild_id` (None: a DM, shard 0's)."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return shard_id == (0 if guild_id is None else shard_for(guild_id, count))


def shard_for(guild_id: int, shard_count: int) -> int:
    """Discord's rule: the shard that receives a guild's events."""
    return (guild_id >> 22) % shard_count


class Connection:
    """One websocket. Payloads go through a queue so they leave in order, compressed in order."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self.closed_by_server = False
        self.session: Session | None = None
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write())

    def send(self, payload: dict[str, Any]) -> None:
        self._queue.put_nowait(payload)

    async def _write(self) -> None:
        while (payload := await self._queue.get()) is not None:
            text = json.dumps(payload, separators=(",", ":"))
            try:
                if self._zlib is None:
                    await self.ws.send_str(text)
                else:
                    data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
            except (ConnectionError, RuntimeError):
                return

    async def close(self, code: int, reason: str = "") -> None:
        if not self.ws.closed:
            self.closed_by_server = True
        self._queue.put_nowait(None)
        await asyncio.wait([self._writer], timeout=1.0)
        if not self.ws.closed:
            await self.ws.close(code=code, message=reason.encode())


class GatewayHub:
    def __init__(self, state: EmulatorState, *, privileged_intents: int) -> None:
        self._state = state
        self.privileged_intents = privileged_intents
        self.url = ""  # ws://127.0.0.1:PORT/gateway once listening
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.identify_count = 0
        self.resume_count = 0
        self.recommended_shards = 1  # what GET /gateway/bot recommends ("auto" sharding uses it)

    @property
    def live_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.valid and s.connection is not None]

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH to every live session whose intents cover it, on the shard its guild belongs to."""
        guild_id = _guild_of(event, data)
        for session in self.sessions.values():
            if session.valid and _wants(session.intents, event, data) and session.serves(guild_id):
                self._send_event(session, event, data)

    async def wait_connected(self, timeout: float) -> None:
        await self._state.feed.wait_until(
            lambda: self.live_sessions, timeout, "a bot connected to the gateway", self._state.transcript.tail
        )

    async def disconnect(self, code: int = 4000) -> None:
        """Drop every socket; sessions stay resumable (the client should RESUME)."""
        for connection in list(self.connections):
            await connection.close(code, "emulator dropped the connection")

    async def restart(self) -> None:
        """Simulate a gateway restart: RECONNECT, close, and forget all sessions (clients re-IDENTIFY)."""
        for session in self.sessions.values():
            session.valid = False
            if session.connection is not None:
                session.connection.send({"op": RECONNECT, "d": None})
        self._state.transcript.add("[gateway] restarted; clients must identify again")
        await self.disconnect(4000)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        if request.query.get("encoding", "json") != "json":
            await ws.close(code=4002, message=b"Error while decoding payload.")
            return ws
        connection = Connection(ws, request.query.get("compress"))
        self.connections.add(connection)
        interval = self._state.settings.heartbeat_interval_ms
        connection.send({"op": HELLO, "d": {"heartbeat_interval": interval}, "s": None, "t": None})
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    await connection.close(4002, "Error while decoding payload.")
                    break
                await self._receive(connection, json.loads(msg.data))
        finally:
            self.connections.discard(connection)
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
                if not connection.closed_by_server and ws.close_code in (1000, 1001):
                    session.valid = False  # a client that closes cleanly ends its session
            await connection.close(1000)
            self._state.changed()
        return ws

    async def _receive(self, connection: Connection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == HEARTBEAT:
            connection.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == IDENTIFY:
            await self._identify(connection, data or {})
        elif op == RESUME:
            await self._resume(connection, data or {})
        elif connection.session is None:
            await connection.close(4003, "Not authenticated.")
        elif op == REQUEST_MEMBERS:
            self._members_chunk(connection.session, data or {})

    async def _identify(self, connection: Connection, data: dict[str, Any]) -> None:
        state = self._state
        if connection.session is not None:
            await connection.close(4005, "Already authenticated.")
            return
        if data.get("token") != state.settings.token:
            state.transcript.add("[gateway] IDENTIFY with a wrong token: closed with 4004")
            await connection.close(4004, "Authentication failed.")
            return
        intents = int(data.get("intents", 0))
        if intents & PRIVILEGED & ~self.privileged_intents:
            state.transcript.add(
                f"[gateway] IDENTIFY asked for privileged intents {intents & PRIVILEGED:#x} "
                "not enabled for this application: closed with 4014"
            )
            await connection.close(4014, "Disallowed intent(s).")
            return
        shard = data.get("shard")
        if shard is not None and not _valid_shard(shard):
            state.transcript.add(f"[gateway] IDENTIFY with shard {shard!r}: closed with {INVALID_SHARD}")
            await connection.close(INVALID_SHARD, "Invalid shard.")
            return
        session = Session(id=secrets.token_hex(16), intents=intents, shard=shard, compress=connection.compress)
        session.connection = connection
        connection.session = session
        self.sessions[session.id] = session
        self.identify_count += 1
        guilds = [g for g in state.guilds.values() if state.bot_user.id in g.members and session.serves(g.id)]
        ready = {
            "v": 10,
            "user": payloads.user(state.bot_user),
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.url,
            "application": {"id": str(state.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "auth": {},
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        self._send_event(session, "READY", ready)
        if intents & GUILDS:
            for g in guilds:
                self._send_event(session, "GUILD_CREATE", payloads.guild_create(g, state))
        on_shard = f", shard {shard[0]} of {shard[1]}" if shard is not None else ""
        state.transcript.add(f"[gateway] {state.bot_user.username} identified (session {session.id[:8]}{on_shard})")
        state.changed()

    async def _resume(self, connection: Connection, data: dict[str, Any]) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or not session.valid or data.get("token") != self._state.settings.token:
            connection.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if session.connection is not None and session.connection is not connection:
            await session.connection.close(4000, "session resumed elsewhere")
        session.connection = connection
        connection.session = session
        self.resume_count += 1
        last = int(data.get("seq") or 0)
        for seq, payload in list(session.sent):
            if seq > last:
                connection.send(payload)
        self._send_event(session, "RESUMED", {})
        self._state.transcript.add(f"[gateway] session {session.id[:8]} resumed")
        self._state.changed()

    def _members_chunk(self, session: Session, data: dict[str, Any]) -> None:
        g = self._state.guilds.get(int(data.get("guild_id", 0)))
        if g is None:
            return
        members = [payloads.member(m, self._state.users[uid]) for uid, m in g.members.items()]
        chunk = {
            "guild_id": str(g.id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        self._send_event(session, "GUILD_MEMBERS_CHUNK", chunk)

    def _send_event(self, session: Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.sent.append((session.seq, payload))
        if session.connection is not None:
            session.connection.send(payload)

    async def close(self) -> None:
        for connection in list(self.connections):
            await connection.close(1001, "emulator stopping")


def _valid_shard(shard: object) -> bool:
    return (isinstance(shard, list) and len(shard) == 2 and all(isinstance(n, int) for n in shard)
            and 0 <= shard[0] < shard[1])


def _guild_of(event: str, data: dict[str, Any]) -> int | None:
    """The guild an event belongs to (a GUILD_CREATE's own id), or None for a DM or a global event."""
    raw = data.get("id") if event in ("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE") else data.get("guild_id")
    return int(raw) if raw is not None else None


def _wants(intents: int, event: str, data: dict[str, Any]) -> bool:
    if event.startswith("MESSAGE_"):
        return bool(intents & (GUILD_MESSAGES if data.get("guild_id") else DIRECT_MESSAGES))
    if event.startswith("GUILD_MEMBER"):
        return bool(intents & GUILD_MEMBERS)
    if event.startswith(("GUILD_", "CHANNEL_")):
        return bool(intents & GUILDS)
    return True
