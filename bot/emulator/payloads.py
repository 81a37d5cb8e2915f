"""Discord JSON for the stored models, shaped the way discord.py parses them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.emulator.models import DM_CHANNEL, Attachment, Channel, Guild, Member, Message, Role, User

if TYPE_CHECKING:
    from bot.emulator.state import EmulatorState


def user(u: User) -> dict[str, Any]:
    return {
        "id": str(u.id),
        "username": u.username,
        "global_name": u.global_name,
        "discriminator": "0",
        "avatar": None,
        "bot": u.bot,
        "public_flags": 0,
    }


def role(r: Role) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "name": r.name,
        "permissions": str(r.permissions),
        "position": r.position,
        "colors": {"primary_color": r.color, "secondary_color": None, "tertiary_color": None},
        "color": r.color,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def member(m: Member, u: User, *, permissions: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "user": user(u),
        "roles": [str(r) for r in m.roles],
        "nick": m.nick,
        "joined_at": m.joined_at,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
    }
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def channel(c: Channel, state: EmulatorState | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": str(c.id), "type": c.type, "flags": 0, "last_message_id": None}
    if c.type == DM_CHANNEL:
        if state is not None and c.recipient_id is not None:
            data["recipients"] = [user(state.users[c.recipient_id])]
        return data
    data.update(
        name=c.name,
        position=c.position,
        topic=c.topic,
        nsfw=c.nsfw,
        rate_limit_per_user=0,
        permission_overwrites=[],
        parent_id=None,
    )
    if c.guild_id is not None:
        data["guild_id"] = str(c.guild_id)
    return data


def guild_create(g: Guild, state: EmulatorState) -> dict[str, Any]:
    members = [member(m, state.users[uid]) for uid, m in g.members.items()]
    return {
        "id": str(g.id),
        "name": g.name,
        "owner_id": str(g.owner_id),
        "icon": None,
        "features": [],
        "preferred_locale": g.locale,
        "roles": [role(r) for r in g.roles.values()],
        "emojis": [],
        "stickers": [],
        "channels": [channel(state.channels[cid]) for cid in g.channel_ids],
        "threads": [],
        "members": members,
        "member_count": len(members),
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "large": False,
        "unavailable": False,
        "joined_at": state.clock.iso(),
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "system_channel_flags": 0,
    }


def attachment(a: Attachment) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(a.id),
        "filename": a.filename,
        "size": a.size,
        "url": a.url,
        "proxy_url": a.url,
        "content_type": a.content_type,
    }
    if a.description is not None:
        data["description"] = a.description
    if a.width is not None:
        data.update(width=a.width, height=a.height)
    if a.ephemeral:
        data["ephemeral"] = True
    return data


def message(m: Message, state: EmulatorState) -> dict[str, Any]:
    author = state.users[m.author_id]
    data: dict[str, Any] = {
        "id": str(m.id),
        "channel_id": str(m.channel_id),
        "type": m.type,
        "content": m.content,
        "author": user(author),
        "attachments": [attachment(a) for a in m.attachments if state.cdn.resign(a)],
        "embeds": m.embeds,
        "components": m.components,
        "mentions": [],
        "mention_roles": [],
        "mention_everyone": False,
        "pinned": False,
        "tts": False,
        "flags": m.flags,
        "timestamp": state.clock.iso(m.created_at),
        "edited_timestamp": state.clock.iso(m.edited_at) if m.edited_at else None,
    }
    if m.guild_id is not None:
        data["guild_id"] = str(m.guild_id)
    if m.nonce is not None:
        data["nonce"] = m.nonce
    if m.webhook_id is not None:
        data["webhook_id"] = str(m.webhook_id)
    if m.application_id is not None:
        data["application_id"] = str(m.application_id)
    if m.reference is not None:
        data["message_reference"] = m.reference
    if m.interaction_id is not None:
        record = state.interactions.get(m.interaction_id)
        if record is not None:
            data["interaction_metadata"] = {
                "id": str(record.id),
                "type": record.type,
                "user": user(state.users[record.user_id]),
                "authorizing_integration_owners": {"0": str(record.guild_id)} if record.guild_id else {},
            }
    return data


def respond(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON labelled exactly ``application/json``, as Discord does: discord.py compares the
    Content-Type header to that string and treats anything else (even with ``; charset``) as text."""
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )
