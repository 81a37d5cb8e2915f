"""Subjects, photos and consents: tokens, names, and the append-only rules."""

from __future__ import annotations

import pytest

from storage import audit, consent, lifecycle, subjects
from storage import db as database
from storage.errors import ConsentError, SubjectError
from tests.helpers import consented, draft


async def test_a_users_subjects_never_share_a_token(db, tmp_path):
    """Each new subject of one owner gets a token none of their others has."""
    made = [await draft(db, tmp_path, owner_id=1, name=f"pet {i}") for i in range(5)]
    assert len({s.token for s in made}) == 5
    other = await draft(db, tmp_path, owner_id=2, name="pet 0")
    assert other.token == made[0].token  # another user's namespace


async def test_prompts_use_token_and_class(db, tmp_path):
    """The instance prompt names the rare token and the class; the class prompt only the class."""
    s = await draft(db, tmp_path, name="Rex", class_noun="Dog")
    assert (s.name, s.instance_prompt, s.class_prompt) == ("rex", f"a photo of {s.token} dog", "a photo of a dog")


async def test_duplicate_name_is_refused_with_advice(db, tmp_path):
    """A second subject of the same name for the same owner says how to proceed."""
    await draft(db, tmp_path, name="rex")
    with pytest.raises(SubjectError, match="Pick another name"):
        await draft(db, tmp_path, name="REX ")


async def test_an_ended_subject_frees_its_name_and_token(db, tmp_path):
    """Once a subject is revoked, its owner can train a new one of that name, with the same token."""
    old = (await consented(db, tmp_path)).subject
    await lifecycle.revoke(db, subject_id=old.id, guild_id=old.guild_id, moderator_id=77, reason="wrong dog",
                           data_dir=tmp_path)
    new = await draft(db, tmp_path, name=old.name)
    assert new.id != old.id and new.token == old.token


@pytest.mark.parametrize("name", ["", "a/../../etc", "x" * 40, "<@123>"])
async def test_unusable_names_are_refused(db, tmp_path, name):
    """Names that could not be shown or stored safely are refused, and nothing is stored."""
    with pytest.raises(SubjectError):
        await draft(db, tmp_path, name=name)
    assert await subjects.list_for_owner(db, 1) == []


async def test_same_photo_twice_is_refused(db, tmp_path):
    """A photo already in the subject cannot be added again."""
    s = await draft(db, tmp_path)
    p = (await subjects.photos(db, s.id))[0]
    with pytest.raises(SubjectError, match="already part"):
        await subjects.add_photo(db, subject_id=s.id, sha256=p.sha256, path=p.path, width=512, height=512)


async def test_consent_keeps_the_exact_text_and_its_hash(db, tmp_path):
    """The recorded consent holds the words shown, their version and SHA-256, and is audited."""
    s = (await consented(db, tmp_path, guild_id=9)).subject
    text = consent.text_for(name=s.name, class_noun=s.class_noun)
    c = await consent.require(db, s.id)
    assert (c.text, c.text_version, c.text_sha256) == (text, consent.VERSION, consent.sha256_text(text))
    assert [e.action for e in await audit.recent(db, guild_id=9)] == ["consent.granted"]


async def test_consent_cannot_be_rewritten(db, tmp_path):
    """Changing a recorded consent's text is refused by the database itself."""
    c = await consent.require(db, (await consented(db, tmp_path)).subject.id)
    with pytest.raises(database.IntegrityError, match="append-only"):
        await db.execute("UPDATE consents SET text = 'I did not agree' WHERE id = ?", (c.id,))


async def test_consent_cannot_be_deleted_while_user_exists(db, tmp_path):
    """Consents are deleted only as part of forgetting their user."""
    c = await consent.require(db, (await consented(db, tmp_path)).subject.id)
    with pytest.raises(database.IntegrityError, match="append-only"):
        await db.execute("DELETE FROM consents WHERE id = ?", (c.id,))


async def test_revoked_consent_blocks_use(db, tmp_path):
    """After a moderator's revoke the subject is revoked, has no active consent, and use is refused with advice."""
    s = (await consented(db, tmp_path)).subject
    revoked = await lifecycle.revoke(db, subject_id=s.id, guild_id=s.guild_id, moderator_id=77,
                                     reason="not their dog", data_dir=tmp_path)
    assert revoked.state == "revoked"
    (record,) = await consent.for_user(db, s.owner_id)
    assert (record.revoked_by, record.revoke_reason) == (77, "not their dog")
    with pytest.raises(ConsentError, match="revoked"):
        await consent.require(db, s.id)


async def test_audit_log_cannot_be_edited(db):
    """Audit entries cannot be updated or deleted."""
    await audit.append(db, action="subject.revoked", actor_id=5, guild_id=9, target_user_id=1)
    with pytest.raises(database.IntegrityError):
        await db.execute("UPDATE audit_log SET action = 'nothing'")
    with pytest.raises(database.IntegrityError):
        await db.execute("DELETE FROM audit_log")
