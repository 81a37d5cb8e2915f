"""The consent text names the base model and its license; a changed text is a new version, old consents stay."""

from __future__ import annotations

from storage import consent, lifecycle
from storage.config import QueueConfig
from storage.licenses import ModelLicense
from tests.helpers import draft

SD15 = ModelLicense(model="runwayml/stable-diffusion-v1-5", revision=None, license="creativeml-openrail-m",
                    name="CreativeML OpenRAIL-M", url="https://example.com/openrail-m", source="known model")
PREVIOUS = "2026-11-v1"


def test_the_text_names_the_model_and_its_license_with_the_link():
    """'Images are made with MODEL under LICENSE', the link beside the license."""
    text = consent.text_for(name="rex", class_noun="dog", model_license=SD15)
    assert ("Images are made with runwayml/stable-diffusion-v1-5 under CreativeML OpenRAIL-M "
            "(<https://example.com/openrail-m>).") in text


def test_the_text_with_the_license_is_a_new_version():
    """The license line came with a new version; the previous version's words still render, without it."""
    old = consent.text_for(name="rex", class_noun="dog", version=PREVIOUS)
    assert consent.VERSION != PREVIOUS and f"Version {consent.VERSION}." in consent.text_for(name="rex",
                                                                                            class_noun="dog")
    assert "Images are made with" not in old and old.endswith(f"Version {PREVIOUS}.")


async def test_a_consent_to_the_previous_version_stays_valid(db, tmp_path):
    """A consent recorded under the previous text is still the subject's active consent."""
    subject = await draft(db, tmp_path)
    old = consent.text_for(name=subject.name, class_noun=subject.class_noun, version=PREVIOUS)
    await consent.grant(db, subject_id=subject.id, user_id=subject.owner_id, guild_id=subject.guild_id, text=old,
                        version=PREVIOUS)
    found = await consent.require(db, subject.id)
    assert (found.text_version, found.text) == (PREVIOUS, old)


async def test_confirm_records_the_text_with_the_license_shown(db, tmp_path):
    """lifecycle.confirm, given the license the /train reply showed, records exactly that text."""
    subject = await draft(db, tmp_path)
    await lifecycle.confirm(db, subject_id=subject.id, user_id=subject.owner_id, queue=QueueConfig(),
                            review_required=True, model_license=SD15)
    recorded = await consent.require(db, subject.id)
    assert recorded.text == consent.text_for(name="rex", class_noun="dog", model_license=SD15)
