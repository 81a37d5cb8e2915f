"""Creating, editing and deleting messages: one path for channel sends, interaction
replies and webhook follow-ups, so all three validate, store, log and dispatch alike."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from bot.emulator import errors, payloads
from bot.emulator.models import EPHEMERAL, LOADING, Channel, Message, User
from bot.emulator.multipart import Upload
from bot.emulator.state import EmulatorState
from bot.emulator.transcript import message_text

SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
COMPONENTS_V2 = 1 << 15
SETTABLE_FLAGS = EPHEMERAL | SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | COMPONENTS_V2
MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_FILES = 10

Dispatch = Callable[[str, dict[str, Any]], None]


class MessageService:
    def __init__(self, state: EmulatorState, dispatch: Dispatch) -> None:
        self._state = state
        self._dispatch = dispatch

    def create(
        self,
        channel: Channel,
        author: User,
        body: dict[str, Any],
        uploads: list[Upload],
        *,
        msg_type: int = 0,
        interaction_id: int | None = None,
        visible_to: int | None = None,
        extra_flags: int = 0,
        allow_empty: bool = False,
    ) -> Message:
        """Validate ``body`` like Discord, store the message, log it and dispatch MESSAGE_CREATE."""
        state = self._state
        _validate(body, uploads, allow_empty=allow_empty)
        flags = (int(body.get("flags") or 0) & SETTABLE_FLAGS) | extra_flags
        if not flags & EPHEMERAL:
            visible_to = None
        msg = Message(
            id=state.ids.next(),
            channel_id=channel.id,
            author_id=author.id,
            created_at=state.clock.now(),
            content=body.get("content") or "",
            embeds=copy.deepcopy(body.get("embeds") or []),
            components=copy.deepcopy(body.get("components") or []),
            flags=flags,
            type=19 if body.get("message_reference") and msg_type == 0 else msg_type,
            guild_id=channel.guild_id,
            nonce=str(body["nonce"]) if body.get("nonce") is not None else None,
            interaction_id=interaction_id,
            visible_to=visible_to,
            reference=body.get("message_reference"),
        )
        if interaction_id is not None:
            msg.webhook_id = msg.application_id = state.application_id
        msg.attachments = self._attachments(channel, body, uploads, [])
        msg.snapshot(msg.created_at)
        state.store_message(msg)
        self._log(msg, "")
        if not msg.ephemeral:
            self._dispatch("MESSAGE_CREATE", payloads.message(msg, state))
        state.changed()
        return msg

    def edit(self, msg: Message, body: dict[str, Any], uploads: list[Upload]) -> Message:
        """Apply a PATCH: only keys present change; files are appended; ``attachments`` keeps ids listed."""
        state = self._state
        if "content" in body:
            msg.content = body["content"] or ""
        if "embeds" in body:
            msg.embeds = copy.deepcopy(body["embeds"] or [])
        if "components" in body:
            msg.components = copy.deepcopy(body["components"] or [])
        if body.get("flags") is not None:
            keep = msg.flags & (EPHEMERAL | COMPONENTS_V2)
            msg.flags = keep | (int(body["flags"]) & (SUPPRESS_EMBEDS | COMPONENTS_V2))
        if "attachments" in body or uploads:
            channel = state.channels[msg.channel_id]
            msg.attachments = self._attachments(channel, body, uploads, msg.attachments)
        was_loading = msg.loading
        msg.flags &= ~LOADING
        if not (msg.content or msg.embeds or msg.attachments or msg.components):
            raise errors.ApiError(400, errors.CANNOT_SEND_EMPTY_MESSAGE, "Cannot send an empty message")
        msg.edited_at = state.clock.now()
        msg.snapshot(msg.edited_at)
        self._log(msg, "" if was_loading else " edited")
        if not msg.ephemeral:
            self._dispatch("MESSAGE_UPDATE", payloads.message(msg, state))
        state.changed()
        return msg

    def delete(self, msg: Message) -> None:
        msg.deleted = True
        self._log_line(msg, " deleted a message")
        if not msg.ephemeral:
            data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id:
                data["guild_id"] = str(msg.guild_id)
            self._dispatch("MESSAGE_DELETE", data)
        self._state.changed()

    def _attachments(
        self, channel: Channel, body: dict[str, Any], uploads: list[Upload], existing: list[Any]
    ) -> list[Any]:
        listed = body.get("attachments")
        kept = list(existing)
        entries: dict[str, dict[str, Any]] = {}
        if isinstance(listed, list):
            entries = {str(a.get("id")): a for a in listed if isinstance(a, dict)}
            kept = [a for a in existing if str(a.id) in entries]
        new = []
        for upload in sorted(uploads, key=lambda u: u.index):
            entry = entries.get(str(upload.index), {})
            new.append(
                self._state.cdn.store(
                    owner_id=channel.id,
                    filename=entry.get("filename") or upload.filename,
                    data=upload.data,
                    content_type=upload.content_type,
                    description=entry.get("description"),
                )
            )
        if len(kept) + len(new) > MAX_FILES:
            raise errors.invalid_form(f"attachments: Must be {MAX_FILES} or fewer in length.")
        return kept + new

    def _log(self, msg: Message, verb: str) -> None:
        text = message_text(msg)
        self._log_line(msg, f" {text}" if msg.loading else f"{verb}: {text}")

    def _log_line(self, msg: Message, rest: str) -> None:
        state = self._state
        who = state.users[msg.author_id].display_name
        if msg.ephemeral and msg.visible_to is not None:
            who += f" (only {state.users[msg.visible_to].display_name} sees this)"
        state.transcript.add(f"[{state.channel_label(msg.channel_id)}] {who}{rest}")


def _validate(body: dict[str, Any], uploads: list[Upload], *, allow_empty: bool) -> None:
    content = body.get("content") or ""
    if not isinstance(content, str):
        raise errors.invalid_form("content: Must be a string.")
    if len(content) > MAX_CONTENT:
        raise errors.invalid_form(f"content: Must be {MAX_CONTENT} or fewer in length.")
    embeds = body.get("embeds") or []
    if len(embeds) > MAX_EMBEDS:
        raise errors.invalid_form(f"embeds: Must be {MAX_EMBEDS} or fewer in length.")
    if len(uploads) > MAX_FILES:
        raise errors.invalid_form(f"files: Must be {MAX_FILES} or fewer in length.")
    if not allow_empty and not (content or embeds or uploads or body.get("components") or body.get("poll")):
        raise errors.ApiError(400, errors.CANNOT_SEND_EMPTY_MESSAGE, "Cannot send an empty message")
