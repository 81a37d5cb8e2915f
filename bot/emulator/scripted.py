"""Scripted users: what a person does in the Discord client, turned into real interactions.

Each action builds the INTERACTION_CREATE payload Discord would send, dispatches it to
the connected bot, writes a transcript line and returns an
:class:`~bot.emulator.interactions.InteractionRecord` that collects the bot's answers.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from bot.emulator import interactions as it
from bot.emulator import payloads
from bot.emulator.commands import resolve_path
from bot.emulator.gateway import GatewayHub
from bot.emulator.models import Channel, Guild, Message, User
from bot.emulator.options import OptionBuilder, nest
from bot.emulator.state import ADMINISTRATOR, EmulatorState
from bot.emulator.transcript import slash_text

GUILD_CONTEXT, BOT_DM_CONTEXT = 0, 1
SELECTS = (3, 5, 6, 7, 8)
TEXT_INPUT = 4


class ScriptedUsers:
    def __init__(
        self, state: EmulatorState, hub: GatewayHub, faults: Any, *, connect_timeout: float = 5.0
    ) -> None:
        self._state = state
        self._hub = hub
        self._faults = faults
        self._connect_timeout = connect_timeout

    async def invoke_slash(
        self,
        guild_id: int | None,
        channel_id: int | None,
        user: User | int,
        name: str | Sequence[str],
        options: dict[str, Any] | None = None,
        attachments: Sequence[tuple[Any, ...]] = (),
    ) -> it.InteractionRecord:
        user = self._state.user(_id(user))
        guild, channel = self._where(guild_id, channel_id, user)
        path = name.split() if isinstance(name, str) else list(name)
        command, scope = self._visible_command(path[0], guild, user)
        chain, specs = resolve_path(command, path[1:])
        builder = OptionBuilder(self._state, guild, " ".join(path))
        leaf = builder.build(specs, options or {}, list(attachments))
        data = {"id": command["id"], "name": command["name"], "type": 1, "options": nest(chain, leaf)}
        if builder.resolved:
            data["resolved"] = builder.resolved
        if scope is not None:
            data["guild_id"] = str(scope)
        summary = slash_text(command["name"], data["options"], builder.attachments)
        return await self._dispatch(it.APPLICATION_COMMAND, guild, channel, user, data, summary)

    async def autocomplete(
        self,
        guild_id: int | None,
        channel_id: int | None,
        user: User | int,
        name: str | Sequence[str],
        options: dict[str, Any],
        focused: str,
        *,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        user = self._state.user(_id(user))
        guild, channel = self._where(guild_id, channel_id, user)
        path = name.split() if isinstance(name, str) else list(name)
        command, scope = self._visible_command(path[0], guild, user)
        chain, specs = resolve_path(command, path[1:])
        spec = next((s for s in specs if s["name"] == focused), None)
        if spec is not None and not spec.get("autocomplete"):
            raise ValueError(f"/{' '.join(path)} option {focused!r} was not synced with autocomplete")
        leaf = OptionBuilder(self._state, guild, " ".join(path)).build(specs, options, [], focused=focused)
        data = {"id": command["id"], "name": command["name"], "type": 1, "options": nest(chain, leaf)}
        if scope is not None:
            data["guild_id"] = str(scope)
        summary = f"types /{' '.join(path)} {focused}:{options.get(focused, '')!s} (autocomplete)"
        record = await self._dispatch(it.AUTOCOMPLETE, guild, channel, user, data, summary, log_as=summary)
        return await record.wait_for_choices(timeout)

    async def click(
        self, message: Message | int, custom_id: str, user: User | int, *, values: Sequence[str] | None = None
    ) -> it.InteractionRecord:
        """Press a button (or pick ``values`` in a select menu) on a message."""
        user = self._state.user(_id(user))
        msg = self._state.messages.get(message.id if isinstance(message, Message) else int(message))
        if msg is None or msg.deleted:
            raise ValueError(f"message {message!r} does not exist (deleted?)")
        if msg.ephemeral and msg.visible_to != user.id:
            raise ValueError(f"{user.username} cannot see that ephemeral message")
        component = msg.component(custom_id)
        if component is None:
            ids = [c["custom_id"] for c in msg.walk_components() if "custom_id" in c]
            raise ValueError(f"message {msg.id} has no component {custom_id!r}; it has {ids}")
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if component["type"] in SELECTS:
            data["values"] = list(values or [])
            summary = f"chose {data['values']} in {component.get('placeholder') or custom_id!r}"
        else:
            summary = f"clicked [{component.get('label') or custom_id}]"
        channel = self._state.channels[msg.channel_id]
        guild = self._state.guilds.get(channel.guild_id or 0)
        return await self._dispatch(
            it.MESSAGE_COMPONENT, guild, channel, user, data, summary, log_as=summary, source=msg
        )

    async def submit_modal(
        self, opened: it.InteractionRecord, values: dict[str, str], user: User | int | None = None
    ) -> it.InteractionRecord:
        """Fill in and submit the form the bot opened in answer to ``opened``."""
        modal = opened.modal
        if modal is None:
            raise ValueError(f"the bot opened no modal for {opened.summary!r}")
        user = self._state.user(_id(user) if user is not None else opened.user_id)
        values = dict(values)
        components = [_submitted(c, values) for c in modal.get("components", [])]
        if values:
            raise ValueError(f"modal {modal.get('custom_id')!r} has no inputs {sorted(values)}")
        data = {"custom_id": modal["custom_id"], "components": [c for c in components if c]}
        channel = self._state.channels[opened.channel_id]
        guild = self._state.guilds.get(channel.guild_id or 0)
        source = self._state.messages.get(opened.source_message_id or 0)
        summary = f"submitted {modal.get('title', '')!r}"
        return await self._dispatch(
            it.MODAL_SUBMIT, guild, channel, user, data, summary, log_as=summary, source=source
        )

    # -- helpers -------------------------------------------------------------------

    def _where(
        self, guild_id: int | None, channel_id: int | None, user: User
    ) -> tuple[Guild | None, Channel]:
        if guild_id is None:
            return None, self._state.dm_channel(user) if channel_id is None else self._state.channel(
                channel_id
            )
        guild = self._state.guild(guild_id)
        channel = self._state.channel(channel_id) if channel_id is not None else None
        if channel is None or channel.guild_id != guild.id:
            raise ValueError(f"channel {channel_id} is not in guild {guild.name!r}")
        if user.id not in guild.members:
            raise ValueError(f"{user.username} is not a member of {guild.name!r}; use emu.add_member first")
        return guild, channel

    def _visible_command(
        self, name: str, guild: Guild | None, user: User
    ) -> tuple[dict[str, Any], int | None]:
        """The command as Discord's client offers it to this user, or PermissionError if hidden."""
        command, scope = self._state.commands.find(name, guild.id if guild else None)
        contexts = command.get("contexts")
        context = GUILD_CONTEXT if guild else BOT_DM_CONTEXT
        if contexts is not None and context not in contexts:
            raise PermissionError(
                f"/{name} is not offered in {'servers' if guild else 'DMs'} (contexts={contexts})"
            )
        if guild is None and command.get("dm_permission") is False:
            raise PermissionError(f"/{name} is not offered in DMs (dm_permission=false)")
        needed = command.get("default_member_permissions")
        if guild is not None and needed is not None:
            have = self._state.permissions(guild, user.id)
            if not have & ADMINISTRATOR and have & int(needed) != int(needed):
                raise PermissionError(
                    f"{user.username} cannot see /{name}: it needs permissions {int(needed):#x}"
                )
        return command, scope

    async def _dispatch(
        self,
        kind: int,
        guild: Guild | None,
        channel: Channel,
        user: User,
        data: dict[str, Any],
        summary: str,
        *,
        log_as: str | None = None,
        source: Message | None = None,
    ) -> it.InteractionRecord:
        state = self._state
        await self._hub.wait_connected(self._connect_timeout)
        interaction_id = state.ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(state.application_id),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "locale": user.locale,
            "entitlements": [],
            "attachment_size_limit": self._faults.upload_limit,
            "channel_id": str(channel.id),
            "channel": payloads.channel(channel, state),
        }
        if guild is not None:
            member = payloads.member(
                guild.members[user.id], user, permissions=state.permissions(guild, user.id)
            )
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": guild.locale, "features": []},
                guild_locale=guild.locale,
                member=member,
                app_permissions=str(state.permissions(guild, state.bot_user.id)),
                authorizing_integration_owners={"0": str(guild.id)},
                context=GUILD_CONTEXT,
            )
        else:
            payload.update(
                user=payloads.user(user),
                app_permissions=str((1 << 51) - 1),
                authorizing_integration_owners={"0": str(user.id)},
                context=BOT_DM_CONTEXT,
            )
        if source is not None:
            payload["message"] = payloads.message(source, state)
        now = state.clock.now()
        record = it.InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            user_id=user.id,
            guild_id=guild.id if guild else None,
            channel_id=channel.id,
            created_at=now,
            expires_at=now + state.settings.interaction_ttl,
            summary=summary,
            payload=payload,
            source_message_id=source.id if source else None,
            _state=state,
        )
        state.interactions[interaction_id] = record
        state.interaction_tokens[token] = record
        state.transcript.add(
            f"[{channel.label}] {user.display_name}{' ' + log_as if log_as else ': ' + summary}"
        )
        self._hub.dispatch("INTERACTION_CREATE", payload)
        state.changed()
        return record


def _submitted(component: dict[str, Any], values: dict[str, str]) -> dict[str, Any] | None:
    """One modal component as the client submits it, taking its value out of ``values``."""
    kind = component.get("type")
    if kind == 1:
        inner = [c for c in (_submitted(c, values) for c in component.get("components", [])) if c]
        return {"type": 1, "components": inner} if inner else None
    if kind == 18:
        inner = _submitted(component["component"], values)
        return {"type": 18, "component": inner} if inner else None
    custom_id = component.get("custom_id")
    if kind == TEXT_INPUT:
        value = str(values.pop(custom_id, component.get("value") or ""))
        if component.get("required", True) and not value:
            raise ValueError(f"modal input {custom_id!r} is required")
        low, high = component.get("min_length", 0), component.get("max_length", 4000)
        if value and not low <= len(value) <= high:
            raise ValueError(f"modal input {custom_id!r} must be {low} to {high} characters long")
        return {"type": TEXT_INPUT, "custom_id": custom_id, "value": value}
    if kind in SELECTS:
        return {"type": kind, "custom_id": custom_id, "values": list(values.pop(custom_id, []))}
    return None


def _id(user: User | int) -> int:
    return user.id if isinstance(user, User) else int(user)
