"""The tree-level error handler: domain errors verbatim, anything else logged and a generic reply."""

from __future__ import annotations

import logging

import pytest
from discord import app_commands

from bot.checks import Refused
from bot.error_handler import GENERIC, reply_error
from storage.errors import Banned, QueueFull
from tests.bot import fakes


@pytest.mark.parametrize("error", [QueueFull(3, 3), Refused(Banned("spam"))])
async def test_domain_errors_are_shown_privately(error):
    """A DreambotError (or a check refusing with one) is answered ephemerally with its advice."""
    interaction = fakes.interaction()
    await reply_error(interaction, error)
    args, kwargs = interaction.response.send_message.call_args
    assert kwargs["ephemeral"] and args[0] == str(getattr(error, "error", error))


async def test_unexpected_errors_are_logged_not_shown(caplog):
    """Anything else is logged with its traceback; the user sees only the generic reply."""
    interaction = fakes.interaction()
    boom = app_commands.CommandInvokeError(app_commands.Command(name="x", description="x", callback=_cb),
                                           RuntimeError("secret detail"))
    with caplog.at_level(logging.ERROR):
        await reply_error(interaction, boom)
    assert interaction.response.send_message.call_args.args[0] == GENERIC
    assert "secret detail" in caplog.text


async def _cb(interaction) -> None:
    """A command callback for the error's command."""
