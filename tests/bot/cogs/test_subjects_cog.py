"""The /subjects cog's callbacks called directly with spec'd fakes."""

from __future__ import annotations

from types import SimpleNamespace

from bot.cogs.subjects import Subjects
from storage import subjects
from storage.licenses import ModelLicense
from tests.bot import fakes
from tests.helpers import consented, draft, trained


async def test_subjects_lists_only_the_users_own(db, cfg):
    """/subjects answers privately with the invoker's subjects and no one else's."""
    await draft(db, cfg.storage.data_dir, owner_id=1, guild_id=40, name="rex", class_noun="dog")
    await draft(db, cfg.storage.data_dir, owner_id=2, guild_id=40, name="tom", class_noun="cat")
    interaction = fakes.interaction(user_id=1)
    await Subjects.list_subjects.callback(Subjects(SimpleNamespace(db=db, model_license=None)), interaction)
    args, kwargs = interaction.response.send_message.call_args
    assert kwargs["ephemeral"] and "**rex**" in args[0] and "tom" not in args[0]


async def test_subjects_shows_the_base_model_and_its_license(db, cfg):
    """/subjects ends with the base model and its license, as the consent text named them."""
    await draft(db, cfg.storage.data_dir, owner_id=1, guild_id=40)
    found = ModelLicense(model="runwayml/stable-diffusion-v1-5", revision=None, license="creativeml-openrail-m",
                         name="CreativeML OpenRAIL-M", url="https://example.com/l", source="known model")
    interaction = fakes.interaction(user_id=1)
    await Subjects.list_subjects.callback(Subjects(SimpleNamespace(db=db, model_license=found)), interaction)
    text = interaction.response.send_message.call_args.args[0]
    assert text.endswith("Images are made with runwayml/stable-diffusion-v1-5 under CreativeML OpenRAIL-M "
                         "(<https://example.com/l>).")


async def test_cancel_of_a_queued_training_cancels_its_subject(db, cfg):
    """/cancel on a queued training answers privately and leaves the subject `cancelled`."""
    queued = await consented(db, cfg.storage.data_dir, owner_id=1, guild_id=40, review=False)
    interaction = fakes.interaction(user_id=1)
    cog = Subjects(SimpleNamespace(db=db, storage=cfg.storage))
    await Subjects.cancel.callback(cog, interaction, queued.job.id)
    args, kwargs = interaction.response.send_message.call_args
    assert kwargs["ephemeral"] and args[0] == f"Job #{queued.job.id} cancelled."
    assert (await subjects.get(db, queued.subject.id)).state == "cancelled"


async def test_export_says_the_license_goes_with_the_file(db, cfg):
    """/export sends the LoRA privately, saying the base model's license binds the file and whoever gets it."""
    subject = await trained(db, cfg.storage.data_dir, owner_id=1, guild_id=40)
    found = ModelLicense(model="runwayml/stable-diffusion-v1-5", revision=None, license="creativeml-openrail-m",
                         name="CreativeML OpenRAIL-M", url=None, source="known model")
    bot = SimpleNamespace(db=db, storage=cfg.storage, settings=cfg.bot, model_license=found)
    interaction = fakes.interaction(user_id=1)
    await Subjects.export.callback(Subjects(bot), interaction, subject.name, "diffusers")
    args, kwargs = interaction.followup.send.call_args
    assert kwargs["ephemeral"] and "under CreativeML OpenRAIL-M. Its use restrictions apply to this file" in args[0]
