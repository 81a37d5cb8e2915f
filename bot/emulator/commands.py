"""Application commands as the bot synced them (``tree.sync()`` -> PUT .../commands).

Stored exactly as sent, plus the fields Discord adds (id, application_id, version,
guild_id), so tests can assert on the synced tree: option types, ``autocomplete``,
``default_member_permissions``, ``contexts``.
"""

from __future__ import annotations

import copy
from typing import Any

from bot.emulator import errors
from bot.emulator.clock import Snowflakes

SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2


class CommandStore:
    def __init__(self, ids: Snowflakes, application_id: int) -> None:
        self._ids = ids
        self._application_id = application_id
        self._scopes: dict[int | None, dict[str, dict[str, Any]]] = {}
        self.sync_count = 0

    def list(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """Commands in one scope: global (``None``) or one guild's."""
        return [copy.deepcopy(c) for c in self._scopes.get(guild_id, {}).values()]

    def replace(self, guild_id: int | None, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bulk overwrite, as PUT does: names kept keep their ids, the rest are dropped."""
        if not isinstance(payloads, list):
            raise errors.invalid_form("expected a list of application commands")
        old = self._scopes.get(guild_id, {})
        new: dict[str, dict[str, Any]] = {}
        for payload in payloads:
            key = _key(payload)
            if key in new:
                raise errors.invalid_form(
                    f"application command names must be unique: {payload.get('name')!r}"
                )
            new[key] = self._stored(guild_id, payload, old.get(key))
        self._scopes[guild_id] = new
        self.sync_count += 1
        return self.list(guild_id)

    def upsert(self, guild_id: int | None, payload: dict[str, Any]) -> dict[str, Any]:
        scope = self._scopes.setdefault(guild_id, {})
        key = _key(payload)
        scope[key] = self._stored(guild_id, payload, scope.get(key))
        return copy.deepcopy(scope[key])

    def get(self, guild_id: int | None, command_id: int | str) -> dict[str, Any]:
        for command in self._scopes.get(guild_id, {}).values():
            if command["id"] == str(command_id):
                return command
        raise errors.not_found(errors.UNKNOWN_APPLICATION_COMMAND, "application command")

    def edit(self, guild_id: int | None, command_id: int | str, changes: dict[str, Any]) -> dict[str, Any]:
        command = self.get(guild_id, command_id)
        command.update({k: v for k, v in changes.items() if k not in ("id", "application_id", "guild_id")})
        command["version"] = str(self._ids.next())
        return copy.deepcopy(command)

    def delete(self, guild_id: int | None, command_id: int | str) -> None:
        command = self.get(guild_id, command_id)
        del self._scopes[guild_id][_key(command)]

    def find(
        self, name: str, guild_id: int | None, command_type: int = 1
    ) -> tuple[dict[str, Any], int | None]:
        """The command a user in ``guild_id`` sees under ``name``: guild scope first, then global."""
        for scope in (guild_id, None) if guild_id is not None else (None,):
            command = self._scopes.get(scope, {}).get(f"{command_type}:{name}")
            if command is not None:
                return command, scope
        where = f"guild {guild_id} or globally" if guild_id is not None else "globally"
        raise LookupError(f"no synced command /{name} {where}; did the bot call tree.sync()?")

    def _stored(
        self, guild_id: int | None, payload: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        if not payload.get("name"):
            raise errors.invalid_form("application command needs a name")
        stored = copy.deepcopy(payload)
        stored.setdefault("type", 1)
        stored.setdefault("description", "")
        stored.setdefault("options", [])
        permissions = stored.get("default_member_permissions")
        stored["default_member_permissions"] = None if permissions is None else str(int(permissions))
        stored.setdefault("nsfw", False)
        stored.update(
            id=old["id"] if old else str(self._ids.next()),
            application_id=str(self._application_id),
            version=str(self._ids.next()),
        )
        if guild_id is not None:
            stored["guild_id"] = str(guild_id)
        return stored


def _key(payload: dict[str, Any]) -> str:
    return f"{payload.get('type', 1)}:{payload.get('name')}"


def resolve_path(
    command: dict[str, Any], path: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Walk ``path`` (sub-command group / sub-command names) from a root command.

    Returns the chain of sub-command options walked and the leaf's own option specs.
    """
    options = command.get("options", [])
    chain: list[dict[str, Any]] = []
    for name in path:
        sub = next(
            (o for o in options if o["name"] == name and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)),
            None,
        )
        if sub is None:
            raise LookupError(
                f"/{command['name']} has no sub-command {name!r} under {' '.join(c['name'] for c in chain) or 'its root'}"
            )
        chain.append(sub)
        options = sub.get("options", [])
    if any(o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options):
        names = ", ".join(o["name"] for o in options)
        raise LookupError(f"/{' '.join([command['name'], *path])} is a group; name a sub-command ({names})")
    return chain, options
