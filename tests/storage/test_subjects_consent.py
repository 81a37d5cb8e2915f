"""Subjects, photos and consents: tokens, names, and the append-only rules."""

from __future__ import annotations

import aiosqlite
import pytest

from storage import audit, consent, subjects
from storage.errors import ConsentError, SubjectError


async def test_a_users_subjects_never_share_a_token(db):
    """Each new subject of one owner gets a token none of their others has."""
    made = [await subjects.create(db, owner_id=1, guild_id=9, name=f"pet {i}", class_noun="dog") for i in range(5)]
    assert len({s.token for s in made}) == 5
    other = await subjects.create(db, owner_id=2, guild_id=9, name="pet 0", class_noun="dog")
    assert other.token == made[0].token  # another user's namespace


async def test_prompts_use_token_and_class(db):
    """The instance prompt names the rare token and the class; the class prompt only the class."""
    s = await subjects.create(db, owner_id=1, guild_id=9, name="Rex", class_noun="Dog")
    assert (s.name, s.instance_prompt, s.class_prompt) == ("rex", f"a photo of {s.token} dog", "a photo of a dog")


async def test_duplicate_name_is_refused_with_advice(db):
    """A second subject of the same name for the same owner says how to proceed."""
    await subjects.create(db, owner_id=1, guild_id=9, name="rex", class_noun="dog")
    with pytest.raises(SubjectError, match="Pick another name"):
        await subjects.create(db, owner_id=1, guild_id=9, name="REX ", class_noun="dog")


@pytest.mark.parametrize("name", ["", "a/../../etc", "x" * 40, "<@123>"])
async def test_unusable_names_are_refused(db, name):
    """Names that could not be shown or stored safely are refused."""
    with pytest.raises(SubjectError):
        await subjects.create(db, owner_id=1, guild_id=9, name=name, class_noun="dog")


async def test_same_photo_twice_is_refused(db):
    """A photo already in the subject cannot be added again."""
    s = await subjects.create(db, owner_id=1, guild_id=9, name="rex", class_noun="dog")
    await subjects.add_photo(db, subject_id=s.id, sha256="ab" * 32, path="blobs/ab/x.png", width=512, height=512)
    with pytest.raises(SubjectError, match="already part"):
        await subjects.add_photo(db, subject_id=s.id, sha256="ab" * 32, path="blobs/ab/x.png", width=512, height=512)


async def test_consent_keeps_the_exact_text_and_its_hash(db):
    """The recorded consent holds the words shown, their version and SHA-256, and is audited."""
    s = await subjects.create(db, owner_id=1, guild_id=9, name="rex", class_noun="dog")
    text = consent.text_for(name=s.name, class_noun=s.class_noun)
    c = await consent.grant(db, subject_id=s.id, user_id=1, guild_id=9, text=text)
    assert (c.text, c.text_version, c.text_sha256) == (text, consent.VERSION, consent.sha256_text(text))
    assert [e.action for e in await audit.recent(db, guild_id=9)] == ["consent.granted"]


async def test_consent_cannot_be_rewritten(db):
    """Changing a recorded consent's text is refused by the database itself."""
    s = await subjects.create(db, owner_id=1, guild_id=9, name="rex", class_noun="dog")
    c = await consent.grant(db, subject_id=s.id, user_id=1, guild_id=9, text="I agree")
    with pytest.raises(aiosqlite.IntegrityError, match="append-only"):
        await db.execute("UPDATE consents SET text = 'I did not agree' WHERE id = ?", (c.id,))


async def test_consent_cannot_be_deleted_while_user_exists(db):
    """Consents are deleted only as part of forgetting their user."""
    s = await subjects.create(db, owner_id=1, guild_id=9, name="rex", class_noun="dog")
    c = await consent.grant(db, subject_id=s.id, user_id=1, guild_id=9, text="I agree")
    with pytest.raises(aiosqlite.IntegrityError, match="append-only"):
        await db.execute("DELETE FROM consents WHERE id = ?", (c.id,))


async def test_revoked_consent_blocks_use(db):
    """After revocation the subject has no active consent and use is refused with advice."""
    s = await subjects.create(db, owner_id=1, guild_id=9, name="rex", class_noun="dog")
    await consent.grant(db, subject_id=s.id, user_id=1, guild_id=9, text="I agree")
    (revoked,) = await consent.revoke(db, subject_id=s.id, by=77, reason="not their dog")
    assert revoked.revoked_by == 77
    with pytest.raises(ConsentError, match="revoked"):
        await consent.require(db, s.id)


async def test_audit_log_cannot_be_edited(db):
    """Audit entries cannot be updated or deleted."""
    await audit.append(db, action="subject.revoked", actor_id=5, guild_id=9, target_user_id=1)
    with pytest.raises(aiosqlite.IntegrityError):
        await db.execute("UPDATE audit_log SET action = 'nothing'")
    with pytest.raises(aiosqlite.IntegrityError):
        await db.execute("DELETE FROM audit_log")
