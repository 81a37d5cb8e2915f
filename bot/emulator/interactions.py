"""One record per interaction a scripted user starts, collecting all the bot sent back.

``await emu.invoke_slash(...)`` returns an :class:`InteractionRecord`; tests then
wait on it::

    record = await emu.invoke_slash(guild.id, channel.id, alice, "ping")
    await record.wait_for_response()
    assert record.content == "pong" and not record.ephemeral
    followup = await record.wait_for_followup()
    assert followup.files[0].filename == "grid.png"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.emulator.errors import ApiError
from bot.emulator.models import Attachment, Message

if TYPE_CHECKING:
    from bot.emulator.state import EmulatorState

APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

PONG = 1
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9


@dataclass(eq=False)
class InteractionRecord:
    id: int
    token: str
    type: int
    user_id: int
    guild_id: int | None
    channel_id: int
    created_at: float
    expires_at: float
    summary: str  # how the transcript showed the user's action
    payload: dict[str, Any] = field(repr=False)
    source_message_id: int | None = None  # the message a component or modal came from
    response_type: int | None = None
    response: dict[str, Any] | None = field(default=None, repr=False)
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    choices: list[dict[str, Any]] | None = None
    modal: dict[str, Any] | None = None
    errors: list[ApiError] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    _state: EmulatorState | None = field(default=None, repr=False)

    # -- what the bot sent ---------------------------------------------------

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None

    @property
    def deferred(self) -> bool:
        return self.response_type in (DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE)

    @property
    def original(self) -> Message | None:
        """The @original message: the reply, the deferred placeholder, or the clicked message."""
        return self._state.messages.get(self.original_id) if self.original_id else None

    @property
    def followups(self) -> list[Message]:
        return [self._state.messages[mid] for mid in self.followup_ids]

    @property
    def ephemeral(self) -> bool:
        """Whether the initial response (or the deferral) was ephemeral."""
        if self.original is not None:
            return self.original.ephemeral
        return bool(((self.response or {}).get("data") or {}).get("flags", 0) & 64)

    @property
    def content(self) -> str:
        return self.original.content if self.original else ""

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.original.embeds if self.original else []

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.original.components if self.original else []

    @property
    def files(self) -> list[Attachment]:
        return self.original.files if self.original else []

    @property
    def messages(self) -> list[Message]:
        """@original (if any) then every follow-up, current versions."""
        seen = [self.original] if self.original else []
        return seen + [m for m in self.followups if m not in seen]

    @property
    def texts(self) -> list[str]:
        """Every content string, embed title and description sent for this interaction."""
        out: list[str] = []
        for msg in self.messages:
            out += [r.content for r in msg.history if r.content]
            for revision in msg.history:
                for embed in revision.embeds:
                    out += [embed.get("title") or "", embed.get("description") or ""]
                    out += [f.get("value", "") for f in embed.get("fields", [])]
        return [t for t in out if t]

    # -- waiting ---------------------------------------------------------------

    async def wait_for(
        self, predicate: Callable[[InteractionRecord], Any], timeout: float = 5.0, what: str = ""
    ) -> Any:
        """Wait until ``predicate(record)`` is truthy and return its value."""
        return await self._state.feed.wait_until(
            lambda: predicate(self), timeout, what or f"a condition on {self.summary!r}", self._context
        )

    async def wait_for_response(self, timeout: float = 5.0) -> InteractionRecord:
        """Wait for the initial callback (reply, defer, modal, choices)."""
        return await self.wait_for(
            lambda r: r if r.acknowledged else None, timeout, f"a response to {self.summary!r}"
        )

    async def wait_for_followup(self, count: int = 1, timeout: float = 5.0) -> Message:
        """Wait until ``count`` follow-ups exist and return the ``count``-th."""
        return await self.wait_for(
            lambda r: r.followups[count - 1] if len(r.followup_ids) >= count else None,
            timeout,
            f"follow-up #{count} to {self.summary!r}",
        )

    async def wait_for_text(self, text: str, timeout: float = 5.0) -> str:
        """Wait until ``text`` appears in any content or embed sent for this interaction."""
        return await self.wait_for(
            lambda r: next((t for t in r.texts if text in t), None),
            timeout,
            f"{text!r} in replies to {self.summary!r}",
        )

    async def wait_for_choices(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        record = await self.wait_for(
            lambda r: r if r.choices is not None else None,
            timeout,
            f"autocomplete choices for {self.summary!r}",
        )
        return record.choices

    def _context(self) -> str:
        events = ", ".join(self.events) or "none"
        errs = "; ".join(str(e) for e in self.errors) or "none"
        return f"interaction events: {events}\nerrors returned to the bot: {errs}\n{self._state.transcript.tail()}"


def expired(record: InteractionRecord, now: float) -> bool:
    return now >= record.expires_at
