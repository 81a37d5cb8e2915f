"""A readable log of everything that happened, for the demo and for failing tests.

Lines look like::

    [#general] alice: /train name:rex class_noun:dog (4 photos)
    [#general] dreambot (only alice sees this): Queued as job 7. [buttons: Cancel]
    [#general] dreambot edited: Training rex... 40% [files: grid.png 212 KB]

``on_event(callback)`` registers a function called with each new line (the demo
prints them live); ``save(path)`` writes them all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bot.emulator.models import Attachment, Message

log = logging.getLogger(__name__)

ATTACHMENT_OPTION = 11
SUB_COMMANDS = (1, 2)


class Transcript:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._listeners: list[Callable[[str], Any]] = []

    def on_event(self, callback: Callable[[str], Any]) -> Callable[[str], Any]:
        """Call ``callback(line)`` for every line from now on (usable as a decorator)."""
        self._listeners.append(callback)
        return callback

    def add(self, line: str) -> None:
        self.lines.append(line)
        for listener in self._listeners:
            try:
                listener(line)
            except Exception:
                log.exception("transcript listener failed on %r", line)

    def tail(self, count: int = 15) -> str:
        shown = self.lines[-count:]
        body = "\n  ".join(shown) or "(empty)"
        return f"transcript (last {len(shown)} lines):\n  {body}"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")
        return path

    def __str__(self) -> str:
        return "\n".join(self.lines)


def slash_text(name: str, options: list[dict[str, Any]], attachments: Iterable[Attachment]) -> str:
    """``/mod review subject:rex (2 photos)`` from a command name and interaction options."""
    parts = [f"/{name}"]
    while options and options[0].get("type") in SUB_COMMANDS:
        parts.append(options[0]["name"])
        options = options[0].get("options", [])
    parts += [f"{o['name']}:{_value(o.get('value'))}" for o in options if o.get("type") != ATTACHMENT_OPTION]
    files = list(attachments)
    if files:
        parts.append(f"({files_phrase(files)})")
    return " ".join(parts)


def files_phrase(files: list[Attachment]) -> str:
    noun = "photo" if all(f.content_type.startswith("image/") for f in files) else "file"
    return f"{len(files)} {noun}{'s' if len(files) != 1 else ''}"


def message_text(msg: Message) -> str:
    """Content, then bracketed summaries of embeds, files and components."""
    parts = [msg.content.replace("\n", "\n    ")] if msg.content else []
    for embed in msg.embeds:
        parts.append(_embed_text(embed))
    if msg.attachments:
        parts.append("[files: " + ", ".join(f"{a.filename} {_size(a.size)}" for a in msg.attachments) + "]")
    buttons = [c.get("label") or c.get("custom_id") or "?" for c in msg.buttons]
    if buttons:
        parts.append("[buttons: " + " | ".join(buttons) + "]")
    selects = [c for c in msg.walk_components() if c.get("type") in (3, 5, 6, 7, 8)]
    for select in selects:
        parts.append(f"[select: {select.get('placeholder') or select.get('custom_id')}]")
    if msg.loading and not parts:
        return "is thinking..."
    return " ".join(parts) or "(empty message)"


def _embed_text(embed: dict[str, Any]) -> str:
    bits = [embed.get("title"), embed.get("description")]
    bits += [f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields", [])]
    return "[embed: " + " | ".join(b for b in bits if b) + "]"


def _value(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if " " in text else text


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    return f"{max(1, round(size / 1024))} KB"
