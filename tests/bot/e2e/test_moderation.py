"""/mod end to end: review with buttons, revoke, policy, bans; events reach the audit channel."""

from __future__ import annotations

import pytest

from bot.checks import NOT_MODERATOR
from storage import guilds, jobs, subjects
from tests.bot.e2e import worker_sim
from tests.bot.e2e.test_train_flow import consent_button, start_train


async def mod(emu, world, *name, **options):
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.mod, ("mod", *name),
                                    options=options)
    await record.wait_for_response(timeout=10)
    return record


async def held_subject(emu, world, dreambot, three_photos):
    """Alice's /train confirmed in a guild that reviews new subjects."""
    await guilds.set_policy(dreambot.db, guild_id=world.guild.id, by=world.mod.id, review_required=True)
    record = await start_train(emu, world, three_photos)
    click = await emu.click(record.original, consent_button(record), world.alice)
    await click.wait_for_text("a moderator will look at it before training", timeout=10)
    return await subjects.find(dreambot.db, owner_id=world.alice.id, name="rex")


async def test_mod_is_hidden_from_members(emu, world, dreambot):
    """/mod needs Manage Server by default, so an ordinary member cannot run it."""
    with pytest.raises(PermissionError):
        await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, ("mod", "review"))


@pytest.mark.parametrize(("action", "state", "kinds"), [("approve", "queued", ["train"]), ("reject", "revoked", [])])
async def test_review_buttons_decide(emu, world, dreambot, three_photos, action, state, kinds):
    """Approve queues the held subject's training; Reject revokes it (its photos deleted); nothing trains before."""
    subject = await held_subject(emu, world, dreambot, three_photos)
    assert subject.state == "consented" and await jobs.list_jobs(dreambot.db) == []
    record = await mod(emu, world, "review")
    card = await record.wait_for_followup()
    click = await emu.click(card, f"review:{action}:{subject.id}", world.mod)
    await click.wait_for_text({"approve": "Approved", "reject": "Rejected"}[action])
    assert (await subjects.get(dreambot.db, subject.id)).state == state
    assert [j.kind for j in await jobs.list_jobs(dreambot.db)] == kinds
    verdict = "approved" if kinds else "rejected"
    await emu.wait_for_message(world.channel, lambda m: f"moderators {verdict}" in m.content)
    if not kinds:
        assert await subjects.photos(dreambot.db, subject.id) == []


async def test_revoke_refuses_generation_and_deletes_the_adapter(emu, world, dreambot):
    """/mod revoke deletes the adapter file; the owner's /imagine is then refused."""
    subject = await worker_sim.ready_subject(dreambot.db, dreambot.storage.data_dir, owner_id=world.alice.id,
                                             guild_id=world.guild.id)
    record = await mod(emu, world, "revoke", subject_id=subject.id, reason="pictured person objected")
    assert "Revoked" in record.content
    assert not list((dreambot.storage.data_dir / "subjects").rglob("*.safetensors"))
    refused = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "imagine",
                                     options={"prompt": "rex in space"})
    await refused.wait_for_response()
    assert refused.ephemeral and "revoked" in refused.content


async def test_events_reach_the_audit_channel_without_photos(emu, world, dreambot):
    """A ban is posted to the audit channel as an embed, with no files."""
    await mod(emu, world, "ban", user=world.bob.id, reason="spam")
    msg = await emu.wait_for_message(world.audit, timeout=10)
    assert msg.embeds[0]["title"] == "user.banned" and msg.files == []


async def test_policy_sets_quota_and_blocklist(emu, world, dreambot):
    """/mod policy changes the daily image quota and blocks a word, and shows the result."""
    record = await mod(emu, world, "policy", images_per_day=5, block="Moon")
    assert "Images per person per day: 5" in record.content and "Blocked in prompts: moon" in record.content
    policy = await guilds.policy(dreambot.db, world.guild.id, default_review=False)
    assert policy.max_images_per_day == 5


def open_mod_to_everyone(emu, world) -> None:
    """What a server admin can do in Server Settings > Integrations: every member's client offers /mod."""
    command, scope = emu.state.commands.find("mod", world.guild.id)
    emu.state.commands.edit(scope, command["id"], {"default_member_permissions": None})


async def snapshot(db) -> list[str]:
    return [line async for line in db.iterdump()]


@pytest.mark.parametrize(("name", "options"), [
    (("ban",), {"user": "bob", "reason": "spam"}),
    (("revoke",), {"subject_id": 1, "reason": "no"}),
    (("policy",), {"images_per_day": 1, "block": "moon"}),
    (("consents",), {}),
    (("audit",), {}),
    (("outbox",), {}),
])
async def test_mod_refuses_a_member_discord_lets_through(emu, world, dreambot, name, options):
    """With /mod opened to everyone in Discord, a plain member is still refused and nothing changes."""
    open_mod_to_everyone(emu, world)
    before = await snapshot(dreambot.db)
    options = {k: world.bob.id if v == "bob" else v for k, v in options.items()}
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, ("mod", *name), options=options)
    await record.wait_for_response(timeout=10)
    assert record.ephemeral and record.content == NOT_MODERATOR
    assert await snapshot(dreambot.db) == before and emu.channel_messages(world.audit) == []


async def test_the_moderator_role_may_moderate(emu, world, dreambot):
    """Once /mod policy names a role, its members (without Manage Server) can use /mod."""
    helpers = emu.add_role(world.guild, "dreambot helpers")
    rita = emu.add_member(world.guild, "rita", roles=[helpers])
    open_mod_to_everyone(emu, world)
    record = await mod(emu, world, "policy", moderator_role=helpers.id)
    assert f"Moderators: Manage Server, and the role <@&{helpers.id}>" in record.content
    banned = await emu.invoke_slash(world.guild.id, world.channel.id, rita, ("mod", "ban"),
                                    options={"user": world.bob.id, "reason": "spam"})
    await banned.wait_for_response(timeout=10)
    assert "can no longer use dreambot" in banned.content
    assert await guilds.get_ban(dreambot.db, guild_id=world.guild.id, user_id=world.bob.id) is not None


async def test_only_manage_server_sets_the_moderator_role(emu, world, dreambot):
    """A member who moderates through the role can't change which role that is."""
    helpers = emu.add_role(world.guild, "dreambot helpers")
    rita = emu.add_member(world.guild, "rita", roles=[helpers])
    await guilds.set_policy(dreambot.db, guild_id=world.guild.id, by=world.mod.id, moderator_role_id=helpers.id)
    open_mod_to_everyone(emu, world)
    record = await emu.invoke_slash(world.guild.id, world.channel.id, rita, ("mod", "policy"),
                                    options={"moderator_role": world.guild.id, "images_per_day": 3})
    await record.wait_for_response(timeout=10)
    assert record.ephemeral and "Manage Server" in record.content
    policy = await guilds.policy(dreambot.db, world.guild.id, default_review=False)
    assert (policy.moderator_role_id, policy.max_images_per_day) == (helpers.id, None)


async def test_everyone_as_moderator_role_removes_it(emu, world, dreambot):
    """Choosing @everyone clears the role instead of making every member a moderator."""
    helpers = emu.add_role(world.guild, "dreambot helpers")
    await guilds.set_policy(dreambot.db, guild_id=world.guild.id, by=world.mod.id, moderator_role_id=helpers.id)
    record = await mod(emu, world, "policy", moderator_role=world.guild.id)  # @everyone's id is the guild's
    assert "Moderators: Manage Server only" in record.content
    assert (await guilds.policy(dreambot.db, world.guild.id, default_review=False)).moderator_role_id is None

