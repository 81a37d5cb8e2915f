"""Slash-command options typed from the synced command, as the Discord client would send them.

Values are checked the way the client enforces them before sending (required options,
choices, ranges, lengths, channel types), so a test that passes a bad value fails
here with a clear message instead of producing an interaction Discord never sends.
Attachment options take ``(filename, bytes, content_type)`` tuples; the bytes go to
the CDN and the option carries the attachment id, with the attachment itself in
``data.resolved.attachments``.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from bot.emulator import payloads
from bot.emulator.models import Attachment, Channel, Guild, Role, User
from bot.emulator.state import EmulatorState

STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11


class OptionBuilder:
    """Builds ``data.options`` and ``data.resolved`` for one interaction."""

    def __init__(self, state: EmulatorState, guild: Guild | None, command_name: str) -> None:
        self._state = state
        self._guild = guild
        self._command = command_name
        self.resolved: dict[str, dict[str, Any]] = {}
        self.attachments: list[Attachment] = []

    def build(
        self,
        specs: list[dict[str, Any]],
        values: dict[str, Any],
        uploads: list[Any],
        *,
        focused: str | None = None,
    ) -> list[dict[str, Any]]:
        by_name = {s["name"]: s for s in specs}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise ValueError(f"/{self._command} has no option(s) {unknown}; it has {sorted(by_name)}")
        values = dict(values)
        pending = list(uploads)
        for spec in specs:
            if spec["type"] == ATTACHMENT and spec["name"] not in values and pending and focused is None:
                values[spec["name"]] = pending.pop(0)
        if pending:
            raise ValueError(
                f"/{self._command} has no free attachment option for {len(pending)} more file(s)"
            )
        options = []
        for spec in specs:
            name = spec["name"]
            if name not in values:
                if spec.get("required") and focused is None:
                    raise ValueError(f"/{self._command} needs option {name!r}")
                continue
            if name == focused:
                options.append(
                    {"name": name, "type": spec["type"], "value": str(values[name]), "focused": True}
                )
            else:
                options.append({"name": name, "type": spec["type"], "value": self._value(spec, values[name])})
        if focused is not None and focused not in by_name:
            raise ValueError(f"/{self._command} has no option {focused!r} to autocomplete")
        return options

    def _value(self, spec: dict[str, Any], value: Any) -> Any:
        kind, name = spec["type"], spec["name"]
        where = f"/{self._command} {name}"
        if kind == STRING:
            value = _check_length(where, spec, str(value))
        elif kind == INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{where} takes an integer, not {value!r}")
            _check_range(where, spec, value)
        elif kind == NUMBER:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where} takes a number, not {value!r}")
            _check_range(where, spec, value)
        elif kind == BOOLEAN:
            if not isinstance(value, bool):
                raise ValueError(f"{where} takes True or False, not {value!r}")
        elif kind in (USER, MENTIONABLE) and not isinstance(value, Role):
            return self._user(_id_of(value))
        elif kind in (ROLE, MENTIONABLE):
            return self._role(_id_of(value))
        elif kind == CHANNEL:
            return self._channel(where, spec, _id_of(value))
        elif kind == ATTACHMENT:
            return self._attachment(where, value)
        choices = spec.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"{where} must be one of {[c['value'] for c in choices]}, not {value!r}")
        return value

    def _user(self, user_id: int) -> str:
        u = self._state.user(user_id)
        self.resolved.setdefault("users", {})[str(u.id)] = payloads.user(u)
        if self._guild is not None and u.id in self._guild.members:
            data = payloads.member(
                self._guild.members[u.id], u, permissions=self._state.permissions(self._guild, u.id)
            )
            data.pop("user")
            self.resolved.setdefault("members", {})[str(u.id)] = data
        return str(u.id)

    def _role(self, role_id: int) -> str:
        if self._guild is None or role_id not in self._guild.roles:
            raise ValueError(f"role {role_id} is not in this guild")
        self.resolved.setdefault("roles", {})[str(role_id)] = payloads.role(self._guild.roles[role_id])
        return str(role_id)

    def _channel(self, where: str, spec: dict[str, Any], channel_id: int) -> str:
        channel = self._state.channel(channel_id)
        allowed = spec.get("channel_types")
        if allowed and channel.type not in allowed:
            raise ValueError(f"{where} takes channel types {allowed}; #{channel.name} is type {channel.type}")
        data = payloads.channel(channel) | {"permissions": str((1 << 51) - 1)}
        self.resolved.setdefault("channels", {})[str(channel.id)] = data
        return str(channel.id)

    def _attachment(self, where: str, value: Any) -> str:
        if not (
            isinstance(value, tuple) and len(value) in (2, 3) and isinstance(value[1], (bytes, bytearray))
        ):
            raise ValueError(f"{where} takes a (filename, bytes, content_type) tuple")
        filename, data = value[0], bytes(value[1])
        content_type = (
            value[2] if len(value) == 3 else mimetypes.guess_type(filename)[0] or "application/octet-stream"
        )
        attachment = self._state.cdn.store(
            owner_id=self._state.application_id,
            filename=filename,
            data=data,
            content_type=content_type,
            ephemeral=True,
        )
        self.attachments.append(attachment)
        self.resolved.setdefault("attachments", {})[str(attachment.id)] = payloads.attachment(attachment)
        return str(attachment.id)


def nest(chain: list[dict[str, Any]], leaf: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wrap leaf options in their sub-command (and group) options, innermost last."""
    options = leaf
    for sub in reversed(chain):
        options = [{"name": sub["name"], "type": sub["type"], "options": options}]
    return options


def _id_of(value: Any) -> int:
    if isinstance(value, (User, Role, Channel)):
        return value.id
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"expected a user, role or channel (or its id), not {value!r}")


def _check_range(where: str, spec: dict[str, Any], value: float) -> None:
    low, high = spec.get("min_value"), spec.get("max_value")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{where} must be between {low} and {high}, not {value}")


def _check_length(where: str, spec: dict[str, Any], value: str) -> str:
    low, high = spec.get("min_length", 0), spec.get("max_length", 6000)
    if not low <= len(value) <= high:
        raise ValueError(f"{where} must be {low} to {high} characters long, not {len(value)}")
    return value
