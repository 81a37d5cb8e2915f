"""Prompt substitution and the blocklist, without Discord."""

from __future__ import annotations

import pytest

from storage import prompts
from storage.errors import PromptRefused, SubjectError
from storage.subjects import Subject


def subject(name: str, token: str = "sks", noun: str = "dog", state: str = "trained", sid: int = 1) -> Subject:
    return Subject(id=sid, owner_id=1, guild_id=2, name=name, token=token, class_noun=noun, state=state,
                   adapter_artifact_id=9, created_at=0.0, updated_at=0.0)


REX = subject("rex")
REX_JR = subject("rex junior", token="ohwx", sid=2)


@pytest.mark.parametrize(("prompt", "owned", "chosen", "expected"), [
    ("rex in space", [REX], None, "a photo of sks dog in space"),
    ("A painting of Rex", [REX], None, "A painting of sks dog"),
    ("in space", [REX], REX, "a photo of sks dog in space"),
    ("rex junior and rex", [REX, REX_JR], None, "a photo of ohwx dog and sks dog"),
    ("tyrex in space with rex", [REX], None, "tyrex in space with sks dog"),
])
def test_expand_substitutes_token_and_class(prompt, owned, chosen, expected):
    """Subject names become "<token> <class>", with "a photo of" when the prompt starts with one."""
    assert prompts.expand(prompt, owned, chosen).text == expected


def test_expand_refuses_a_prompt_without_a_subject():
    """A prompt naming none of the user's subjects is refused with their names."""
    with pytest.raises(PromptRefused, match="Yours: rex"):
        prompts.expand("a cat in space", [REX])


@pytest.mark.parametrize(("state", "advice"), [
    ("draft", "waiting for your confirmation"), ("consented", "moderator's review"), ("queued", "still queued"),
    ("training", "still training"), ("failed", "failed to train"), ("cancelled", "was cancelled"),
    ("revoked", "consent was revoked"),
])
def test_require_usable_explains_the_state(state, advice):
    """A subject that is not trained is refused with what its state means."""
    with pytest.raises(SubjectError, match=advice):
        prompts.require_usable(subject("rex", state=state))


def test_require_usable_accepts_a_trained_subject_with_an_adapter():
    """A trained subject with its adapter in use passes; without an adapter it is refused."""
    prompts.require_usable(REX)
    with pytest.raises(SubjectError, match="no trained adapter"):
        prompts.require_usable(Subject(**{**vars(REX), "adapter_artifact_id": None}))


@pytest.mark.parametrize(("prompt", "terms", "found"), [
    ("rex on the MOON", ["moon"], "moon"), ("rex in a red   hat", ["red hat"], "red hat"),
    ("honeymoon", ["moon"], None), ("rex", [], None),
])
def test_blocked_term_matches_whole_words(prompt, terms, found):
    """Blocked terms match whole words and phrases, case-insensitively."""
    assert prompts.blocked_term(prompt, terms) == found
