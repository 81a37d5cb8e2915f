"""Discord API errors as the emulator answers them: HTTP status plus a JSON body.

Discord puts a numeric ``code`` and a ``message`` in every error body; discord.py
copies both onto :class:`discord.HTTPException` (``.status``, ``.code``, ``.text``).
The codes below are Discord's own, so a bot that branches on them here behaves the
same against the real API.
"""

from __future__ import annotations

from aiohttp import web

from bot.emulator import payloads

UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_MEMBER = 10007
UNKNOWN_MESSAGE = 10008
UNKNOWN_ROLE = 10011
UNKNOWN_USER = 10013
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
UNKNOWN_APPLICATION_COMMAND = 10063
UNAUTHORIZED = 0
CANNOT_EDIT_OTHERS_MESSAGE = 50005
REQUEST_ENTITY_TOO_LARGE = 40005
ALREADY_ACKNOWLEDGED = 40060
INVALID_WEBHOOK_TOKEN = 50027
INVALID_FORM_BODY = 50035
CANNOT_SEND_EMPTY_MESSAGE = 50006


class ApiError(Exception):
    """An error the emulator returns to the client instead of a success body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{status} {message} (code {code})")
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return payloads.respond({"code": self.code, "message": self.message}, status=self.status)


def not_found(code: int, what: str) -> ApiError:
    """404 in Discord's wording, e.g. ``not_found(UNKNOWN_MESSAGE, "Message")``."""
    return ApiError(404, code, f"Unknown {what}")


def invalid_form(message: str) -> ApiError:
    return ApiError(400, INVALID_FORM_BODY, f"Invalid Form Body: {message}")


def invalid_webhook_token() -> ApiError:
    return ApiError(401, INVALID_WEBHOOK_TOKEN, "Invalid Webhook Token")


def too_large() -> ApiError:
    return ApiError(413, REQUEST_ENTITY_TOO_LARGE, "Request entity too large")


def unauthorized() -> ApiError:
    return ApiError(401, UNAUTHORIZED, "401: Unauthorized")
