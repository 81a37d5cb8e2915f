"""Faults a test injects: rate limits, server errors, a smaller upload limit.

::

    emu.faults.rate_limit("POST", "/channels/{channel_id}/messages", times=1, retry_after=0.05)
    emu.faults.server_error("PATCH", "/webhooks/*/*/messages/@original")
    emu.faults.upload_limit = 256 * 1024      # 413 / 40005 for any bigger file

Paths are relative to the API base; ``{name}`` and ``*`` match one path segment.
``emu.faults.fired`` lists what was injected, e.g. ``"429 POST /channels/1/messages"``.
Expired interaction tokens are on the emulator: ``emu.expire_interaction(record)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.emulator import payloads
from bot.emulator.ratelimit import limited_response

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # Discord's per-file limit for bots without boosts


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: float = 0.0
    is_global: bool = False

    def response(self, headers: dict[str, str]) -> web.Response:
        if self.status == 429:
            scope = "global" if self.is_global else "user"
            return limited_response(self.retry_after, headers, is_global=self.is_global, scope=scope)
        return payloads.respond(self.body, status=self.status, headers=headers)


class Faults:
    def __init__(self) -> None:
        self.upload_limit = DEFAULT_UPLOAD_LIMIT
        self.fired: list[str] = []
        self._pending: list[Fault] = []

    def rate_limit(
        self, method: str, path: str, *, times: int = 1, retry_after: float = 0.05, is_global: bool = False
    ) -> None:
        """Answer the next ``times`` matching requests with 429 and ``retry_after`` seconds."""
        self._add(
            Fault(
                method.upper(), compile_path(path), 429, times, retry_after=retry_after, is_global=is_global
            )
        )

    def server_error(self, method: str, path: str, *, times: int = 1, status: int = 500) -> None:
        """Answer the next ``times`` matching requests with a 5xx (discord.py retries 500/502/504)."""
        body = {"code": 0, "message": f"{status}: Internal Server Error"}
        self._add(Fault(method.upper(), compile_path(path), status, times, body=body))

    def fail(self, method: str, path: str, *, status: int, code: int, message: str, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with any Discord error body."""
        self._add(
            Fault(method.upper(), compile_path(path), status, times, body={"code": code, "message": message})
        )

    def clear(self) -> None:
        self._pending.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if one is pending (consumes one use)."""
        for fault in self._pending:
            if fault.method in (method, "*") and fault.pattern.fullmatch(path):
                fault.times -= 1
                if fault.times <= 0:
                    self._pending.remove(fault)
                self.fired.append(f"{fault.status} {method} {path}")
                return fault
        return None

    def _add(self, fault: Fault) -> None:
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        self._pending.append(fault)


def compile_path(path: str) -> re.Pattern[str]:
    """``/channels/{channel_id}/messages`` or ``/channels/*/messages`` -> a one-segment wildcard regex."""
    if not path.startswith("/"):
        raise ValueError(f"paths start with '/', relative to the API base: {path!r}")
    parts = re.split(r"(\{[^}/]*\}|\*)", path)
    return re.compile("".join("[^/]+" if p == "*" or p.startswith("{") else re.escape(p) for p in parts))
