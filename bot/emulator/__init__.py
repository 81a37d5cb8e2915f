"""A local Discord (REST v10, gateway, CDN) for end-to-end tests and the offline demo.

The real discord.py client connects to it after :func:`point_discord_py_at`. See
:mod:`bot.emulator.server` for the API and ``tests/bot/emulator/`` for examples.
"""

from bot.emulator.errors import ApiError
from bot.emulator.faults import Faults
from bot.emulator.interactions import InteractionRecord
from bot.emulator.models import Attachment, Channel, Guild, Message, Role, User
from bot.emulator.redirect import point_discord_py_at
from bot.emulator.server import DEFAULT_TOKEN, DiscordEmulator

__all__ = [
    "DEFAULT_TOKEN",
    "ApiError",
    "Attachment",
    "Channel",
    "DiscordEmulator",
    "Faults",
    "Guild",
    "InteractionRecord",
    "Message",
    "Role",
    "User",
    "point_discord_py_at",
]
