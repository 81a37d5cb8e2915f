"""The /subjects cog's callbacks called directly with spec'd fakes."""

from __future__ import annotations

from types import SimpleNamespace

from bot.cogs.subjects import Subjects
from storage import subjects
from tests.bot import fakes
from tests.helpers import consented, draft


async def test_subjects_lists_only_the_users_own(db, cfg):
    """/subjects answers privately with the invoker's subjects and no one else's."""
    await draft(db, cfg.storage.data_dir, owner_id=1, guild_id=40, name="rex", class_noun="dog")
    await draft(db, cfg.storage.data_dir, owner_id=2, guild_id=40, name="tom", class_noun="cat")
    interaction = fakes.interaction(user_id=1)
    await Subjects.list_subjects.callback(Subjects(SimpleNamespace(db=db)), interaction)
    args, kwargs = interaction.response.send_message.call_args
    assert kwargs["ephemeral"] and "**rex**" in args[0] and "tom" not in args[0]


async def test_cancel_of_a_queued_training_cancels_its_subject(db, cfg):
    """/cancel on a queued training answers privately and leaves the subject `cancelled`."""
    queued = await consented(db, cfg.storage.data_dir, owner_id=1, guild_id=40, review=False)
    interaction = fakes.interaction(user_id=1)
    cog = Subjects(SimpleNamespace(db=db, storage=cfg.storage))
    await Subjects.cancel.callback(cog, interaction, queued.job.id)
    args, kwargs = interaction.response.send_message.call_args
    assert kwargs["ephemeral"] and args[0] == f"Job #{queued.job.id} cancelled."
    assert (await subjects.get(db, queued.subject.id)).state == "cancelled"
