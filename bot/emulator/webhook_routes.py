"""Interaction callbacks and the interaction webhook (follow-ups, @original).

Rules Discord enforces and the emulator copies:

* an interaction must be acknowledged within ``callback_deadline`` seconds (3) or the
  callback gets 404 / 10062 Unknown interaction; acknowledging twice gets 400 / 40060;
* its token works for ``interaction_ttl`` seconds (15 minutes); after that, or after
  ``emu.expire_interaction(record)``, callbacks and webhook calls get 401 / 50027;
* follow-ups need an acknowledged interaction (404 / 10015 before);
* after a deferred reply (type 5) the first follow-up replaces the "thinking" message,
  and keeps the deferral's visibility whatever its own ephemeral flag says.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.emulator import errors, payloads
from bot.emulator import interactions as it
from bot.emulator.messages import MessageService
from bot.emulator.models import EPHEMERAL, LOADING, Message
from bot.emulator.multipart import read_body
from bot.emulator.state import EmulatorState

ALLOWED = {
    it.PONG: (1,),
    it.CHANNEL_MESSAGE: (it.APPLICATION_COMMAND, it.MESSAGE_COMPONENT, it.MODAL_SUBMIT),
    it.DEFERRED_CHANNEL_MESSAGE: (it.APPLICATION_COMMAND, it.MESSAGE_COMPONENT, it.MODAL_SUBMIT),
    it.DEFERRED_UPDATE_MESSAGE: (it.MESSAGE_COMPONENT, it.MODAL_SUBMIT),
    it.UPDATE_MESSAGE: (it.MESSAGE_COMPONENT, it.MODAL_SUBMIT),
    it.AUTOCOMPLETE_RESULT: (it.AUTOCOMPLETE,),
    it.MODAL: (it.APPLICATION_COMMAND, it.MESSAGE_COMPONENT),
}


class WebhookRoutes:
    def __init__(self, state: EmulatorState, messages: MessageService, faults: Any) -> None:
        self._state = state
        self._messages = messages
        self._faults = faults

    def register(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_post(prefix + "/interactions/{interaction_id}/{token}/callback", self.callback)
        router.add_post(prefix + "/webhooks/{webhook_id}/{token}", self.followup)
        message = prefix + "/webhooks/{webhook_id}/{token}/messages/{message_id}"
        router.add_get(message, self.get_message)
        router.add_patch(message, self.edit_message)
        router.add_delete(message, self.delete_message)

    async def _body(self, request: web.Request) -> tuple[dict[str, Any], list[Any]]:
        limits = {
            "file_limit": self._faults.upload_limit,
            "request_limit": self._state.settings.max_request_size,
        }
        return await read_body(request, **limits)

    # -- callback ------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        state = self._state
        record = state.interactions.get(_int(request.match_info["interaction_id"]))
        if record is None:
            raise errors.not_found(errors.UNKNOWN_INTERACTION, "interaction")
        self._check_token(record, request.match_info["token"])
        deadline = state.settings.callback_deadline
        if (
            not record.acknowledged
            and deadline is not None
            and state.clock.now() > record.created_at + deadline
        ):
            raise self._fail(record, errors.not_found(errors.UNKNOWN_INTERACTION, "interaction"))
        if record.acknowledged:
            raise self._fail(
                record,
                errors.ApiError(
                    400, errors.ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged."
                ),
            )
        body, uploads = await self._body(request)
        kind = body.get("type")
        if record.type not in ALLOWED.get(kind, ()):
            raise self._fail(
                record, errors.invalid_form(f"type: interaction response type {kind} is not valid here")
            )
        data = body.get("data") or {}
        msg = self._respond(record, kind, data, uploads)
        record.response_type, record.response = kind, body
        record.events.append(f"callback type {kind}")
        state.changed()
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        return payloads.respond(self._callback_response(record, kind, msg))

    def _respond(
        self, record: it.InteractionRecord, kind: int, data: dict[str, Any], uploads: list[Any]
    ) -> Message | None:
        state = self._state
        channel = state.channels[record.channel_id]
        msg_type = 20 if record.type == it.APPLICATION_COMMAND else 0
        common = {"msg_type": msg_type, "interaction_id": record.id, "visible_to": record.user_id}
        if kind == it.CHANNEL_MESSAGE:
            msg = self._messages.create(channel, state.bot_user, data, uploads, **common)
        elif kind == it.DEFERRED_CHANNEL_MESSAGE:
            flags = {"flags": int(data.get("flags") or 0) & EPHEMERAL}
            msg = self._messages.create(
                channel, state.bot_user, flags, [], extra_flags=LOADING, allow_empty=True, **common
            )
        elif kind in (it.DEFERRED_UPDATE_MESSAGE, it.UPDATE_MESSAGE):
            msg = state.messages[record.source_message_id] if record.source_message_id else None
            if msg is None:
                raise self._fail(record, errors.invalid_form("this interaction has no message to update"))
            if kind == it.UPDATE_MESSAGE:
                self._messages.edit(msg, data, uploads)
        elif kind == it.AUTOCOMPLETE_RESULT:
            record.choices = list(data.get("choices") or [])
            names = ", ".join(str(c.get("name")) for c in record.choices) or "(no choices)"
            state.transcript.add(f"[{channel.label}] {state.bot_user.display_name} suggests: {names}")
            return None
        elif kind == it.MODAL:
            record.modal = data
            who = state.users[record.user_id].display_name
            state.transcript.add(
                f"[{channel.label}] {state.bot_user.display_name} opens a form for {who}: "
                f"{data.get('title', '')!r}"
            )
            return None
        else:
            return None
        record.original_id = msg.id
        return msg

    def _callback_response(
        self, record: it.InteractionRecord, kind: int, msg: Message | None
    ) -> dict[str, Any]:
        interaction: dict[str, Any] = {"id": str(record.id), "type": record.type}
        out: dict[str, Any] = {"interaction": interaction}
        if msg is not None:
            interaction.update(
                response_message_id=str(msg.id),
                response_message_loading=msg.loading,
                response_message_ephemeral=msg.ephemeral,
            )
            out["resource"] = {"type": kind, "message": payloads.message(msg, self._state)}
        else:
            out["resource"] = {"type": kind}
        return out

    # -- webhook -----------------------------------------------------------------------

    async def followup(self, request: web.Request) -> web.Response:
        state = self._state
        record = self._record(request)
        if not record.acknowledged:
            raise self._fail(record, errors.not_found(errors.UNKNOWN_WEBHOOK, "Webhook"))
        body, uploads = await self._body(request)
        original = record.original
        if record.response_type == it.DEFERRED_CHANNEL_MESSAGE and original is not None and original.loading:
            msg = self._messages.edit(original, body, uploads)
            record.events.append("follow-up replaced the deferred message")
        else:
            channel = state.channels[record.channel_id]
            msg_type = 20 if record.type == it.APPLICATION_COMMAND else 0
            msg = self._messages.create(
                channel,
                state.bot_user,
                body,
                uploads,
                msg_type=msg_type,
                interaction_id=record.id,
                visible_to=record.user_id,
            )
            record.events.append("follow-up")
        record.followup_ids.append(msg.id)
        state.changed()
        return payloads.respond(payloads.message(msg, state))

    async def get_message(self, request: web.Request) -> web.Response:
        record = self._record(request)
        return payloads.respond(payloads.message(self._message(record, request), self._state))

    async def edit_message(self, request: web.Request) -> web.Response:
        record = self._record(request)
        msg = self._message(record, request)
        body, uploads = await self._body(request)
        self._messages.edit(msg, body, uploads)
        record.events.append(f"edit {request.match_info['message_id']}")
        return payloads.respond(payloads.message(msg, self._state))

    async def delete_message(self, request: web.Request) -> web.Response:
        record = self._record(request)
        self._messages.delete(self._message(record, request))
        record.events.append(f"delete {request.match_info['message_id']}")
        return web.Response(status=204)

    # -- lookups -------------------------------------------------------------------------

    def _record(self, request: web.Request) -> it.InteractionRecord:
        if request.match_info["webhook_id"] != str(self._state.application_id):
            raise errors.not_found(errors.UNKNOWN_WEBHOOK, "Webhook")
        record = self._state.interaction_tokens.get(request.match_info["token"])
        if record is None:
            raise errors.invalid_webhook_token()
        self._check_token(record, record.token)
        return record

    def _message(self, record: it.InteractionRecord, request: web.Request) -> Message:
        key = request.match_info["message_id"]
        message_id = record.original_id if key == "@original" else _int(key)
        if message_id is None or (message_id != record.original_id and message_id not in record.followup_ids):
            raise self._fail(record, errors.not_found(errors.UNKNOWN_MESSAGE, "Message"))
        msg = self._state.messages[message_id]
        if msg.deleted:
            raise self._fail(record, errors.not_found(errors.UNKNOWN_MESSAGE, "Message"))
        return msg

    def _check_token(self, record: it.InteractionRecord, token: str) -> None:
        if token != record.token or it.expired(record, self._state.clock.now()):
            raise self._fail(record, errors.invalid_webhook_token())

    def _fail(self, record: it.InteractionRecord, error: errors.ApiError) -> errors.ApiError:
        record.errors.append(error)
        self._state.changed()
        return error


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None
