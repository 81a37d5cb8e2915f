"""The things the fake Discord stores: users, guilds, channels, messages, attachments.

Plain dataclasses. Tests read them directly (``msg.content``, ``msg.files[0].data``,
``msg.history``); :mod:`bot.emulator.payloads` turns them into Discord JSON.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

EPHEMERAL = 1 << 6  # message flag: only the invoking user sees it
LOADING = 1 << 7  # message flag: a deferred "bot is thinking..." placeholder

TEXT_CHANNEL = 0
DM_CHANNEL = 1


@dataclass
class User:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None
    locale: str = "en-US"

    @property
    def display_name(self) -> str:
        return self.global_name or self.username


@dataclass
class Role:
    id: int
    name: str
    permissions: int = 0
    position: int = 0
    color: int = 0


@dataclass
class Member:
    user_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = ""


@dataclass
class Channel:
    id: int
    name: str
    type: int = TEXT_CHANNEL
    guild_id: int | None = None
    position: int = 0
    topic: str | None = None
    recipient_id: int | None = None  # the other user of a DM channel
    nsfw: bool = False  # age-restricted (Discord's "NSFW channel" setting)

    @property
    def label(self) -> str:
        """How the transcript names it: ``#general`` or ``DM alice``-style (set by the state)."""
        return f"#{self.name}" if self.type == TEXT_CHANNEL else self.name


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    locale: str = "en-US"
    roles: dict[int, Role] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    members: dict[int, Member] = field(default_factory=dict)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]


@dataclass
class Attachment:
    id: int
    filename: str
    content_type: str
    data: bytes = field(repr=False)
    url: str = ""
    description: str | None = None
    width: int | None = None
    height: int | None = None
    ephemeral: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Revision:
    """One state of a message; ``Message.history`` keeps every one, oldest first."""

    at: float
    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    attachments: tuple[Attachment, ...]
    flags: int


@dataclass
class Message:
    id: int
    channel_id: int
    author_id: int
    created_at: float
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    guild_id: int | None = None
    nonce: str | None = None
    edited_at: float | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None  # set on interaction responses and follow-ups
    visible_to: int | None = None  # user id for ephemeral messages
    reference: dict[str, Any] | None = None
    deleted: bool = False
    history: list[Revision] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    @property
    def files(self) -> list[Attachment]:
        return list(self.attachments)

    @property
    def embed_titles(self) -> list[str]:
        return [e.get("title", "") for e in self.embeds]

    def snapshot(self, at: float) -> None:
        """Append the current state to ``history``."""
        self.history.append(
            Revision(
                at=at,
                content=self.content,
                embeds=copy.deepcopy(self.embeds),
                components=copy.deepcopy(self.components),
                attachments=tuple(self.attachments),
                flags=self.flags,
            )
        )

    def walk_components(self) -> Iterator[dict[str, Any]]:
        """Every component, nested ones included (rows, sections, labels, containers)."""
        yield from walk_components(self.components)

    def component(self, custom_id: str) -> dict[str, Any] | None:
        return next((c for c in self.walk_components() if c.get("custom_id") == custom_id), None)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [c for c in self.walk_components() if c.get("type") == 2]


def walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for component in components:
        yield component
        yield from walk_components(component.get("components", []))
        for key in ("component", "accessory"):
            if isinstance(component.get(key), dict):
                yield from walk_components([component[key]])
