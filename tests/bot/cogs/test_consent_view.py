"""The consent view, with spec'd fakes: only the invoker may answer; Cancel deletes the draft."""

from __future__ import annotations

from types import SimpleNamespace

from bot.consent_view import ConsentView
from storage import subjects
from tests.bot import fakes
from tests.helpers import draft


async def test_custom_ids_carry_the_subject():
    """Both buttons' custom_ids name the subject, so they survive a restart."""
    view = ConsentView(7, owner_id=1)
    assert [c.custom_id for c in view.children] == ["consent:confirm:7", "consent:cancel:7"]
    assert view.is_persistent()


async def test_someone_else_is_refused_privately():
    """interaction_check refuses another user with an ephemeral explanation."""
    interaction = fakes.interaction(user_id=2)
    assert await ConsentView(7, owner_id=1).interaction_check(interaction) is False
    args, kwargs = interaction.response.send_message.call_args
    assert kwargs["ephemeral"] and "Only the person who ran /train" in args[0]


async def test_cancel_deletes_the_draft(db, cfg):
    """Cancel removes the draft subject and answers by replacing the consent message."""
    subject = await draft(db, cfg.storage.data_dir, owner_id=1, guild_id=40)
    bot = SimpleNamespace(db=db, storage=cfg.storage)
    interaction = fakes.interaction(user_id=1, client=bot)
    view = ConsentView(subject.id, owner_id=1)
    await view.cancel.callback(interaction)
    assert await subjects.find(db, owner_id=1, name="rex") is None
    assert "Nothing will be trained" in interaction.response.edit_message.call_args.kwargs["content"]
