"""Who moderates: Manage Server or the guild's moderator role, checked by the bot whatever Discord shows."""

from __future__ import annotations

from unittest.mock import MagicMock

import discord
import pytest
from discord import app_commands

from bot import checks, views
from storage import guilds
from storage.config import BotSettings
from tests.bot import fakes

MOD_ROLE, OTHER_ROLE = 500, 501
_MEMBER = discord.Member(data={"user": fakes._USER_DATA, "roles": [], "joined_at": None, "deaf": False,
                               "mute": False, "flags": 0}, guild=MagicMock(), state=fakes._STATE)


def moderator_interaction(*, manage_guild: bool = False, roles: tuple[int, ...] = (), guild_id: int | None = 40,
                          db=None) -> MagicMock:
    """An interaction by a guild member with `roles`; Discord computed `manage_guild` for it."""
    member = MagicMock(spec_set=_MEMBER)
    member.id = 1
    member.get_role.side_effect = lambda role_id: MagicMock() if role_id in roles else None
    client = MagicMock()
    client.db, client.settings = db, BotSettings()
    interaction = fakes.interaction(guild_id=guild_id, client=client)
    interaction.user = member
    interaction.permissions = discord.Permissions(manage_guild=manage_guild)
    return interaction


def policy(role_id: int | None) -> guilds.Policy:
    return guilds.Policy(guild_id=40, review_required=False, max_subjects_per_user=None, max_images_per_day=None,
                         moderator_role_id=role_id)


@pytest.mark.parametrize(("manage_guild", "roles", "role_id", "allowed"), [
    (True, (), None, True),
    (False, (), None, False),
    (False, (MOD_ROLE,), MOD_ROLE, True),
    (False, (OTHER_ROLE,), MOD_ROLE, False),
    (False, (MOD_ROLE,), None, False),
])
def test_is_moderator(manage_guild, roles, role_id, allowed):
    """Manage Server always moderates; otherwise only the guild's configured role does."""
    interaction = moderator_interaction(manage_guild=manage_guild, roles=roles)
    assert checks.is_moderator(interaction, policy(role_id)) is allowed


def test_nobody_moderates_outside_a_guild():
    """In a DM there is no server to moderate, whatever the permissions say."""
    interaction = moderator_interaction(manage_guild=True, guild_id=None)
    assert not checks.is_moderator(interaction, None)


async def test_ensure_moderator_reads_the_guilds_role(db):
    """The role set in the guild's policy is what ensure_moderator accepts."""
    await guilds.set_policy(db, guild_id=40, by=9, moderator_role_id=MOD_ROLE)
    await checks.ensure_moderator(moderator_interaction(roles=(MOD_ROLE,), db=db))


async def test_moderator_only_refuses_with_advice(db):
    """A plain member is refused with a message that says who may moderate."""
    command = checks.moderator_only()(app_commands.Command(name="x", description="x", callback=_cb))
    with pytest.raises(checks.Refused) as refused:
        await command.checks[0](moderator_interaction(roles=(OTHER_ROLE,), db=db))
    assert str(refused.value.error) == checks.NOT_MODERATOR and "Manage Server" in checks.NOT_MODERATOR


@pytest.mark.parametrize(("roles", "allowed"), [((MOD_ROLE,), True), ((OTHER_ROLE,), False)])
async def test_review_buttons_use_the_same_rule(db, roles, allowed):
    """Approve / Reject answer a moderator's click; anyone else is told why, privately."""
    await guilds.set_policy(db, guild_id=40, by=9, moderator_role_id=MOD_ROLE)
    interaction = moderator_interaction(roles=roles, db=db)
    assert await views.Review("approve", 7).interaction_check(interaction) is allowed
    if not allowed:
        interaction.response.send_message.assert_awaited_once_with(checks.NOT_MODERATOR, ephemeral=True)


async def _cb(interaction) -> None:
    """A command callback for the check to guard."""
