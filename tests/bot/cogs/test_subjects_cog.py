"""The /subjects cog's callbacks called directly with spec'd fakes."""

from __future__ import annotations

from types import SimpleNamespace

from bot.cogs.subjects import Subjects
from storage import subjects
from tests.bot import fakes


async def test_subjects_lists_only_the_users_own(db, cfg):
    """/subjects answers privately with the invoker's subjects and no one else's."""
    await subjects.create(db, owner_id=1, guild_id=40, name="rex", class_noun="dog")
    await subjects.create(db, owner_id=2, guild_id=40, name="tom", class_noun="cat")
    interaction = fakes.interaction(user_id=1)
    await Subjects.list_subjects.callback(Subjects(SimpleNamespace(db=db)), interaction)
    args, kwargs = interaction.response.send_message.call_args
    assert kwargs["ephemeral"] and "**rex**" in args[0] and "tom" not in args[0]
