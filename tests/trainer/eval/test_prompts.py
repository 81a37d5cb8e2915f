"""The paper's prompt sets and how a subject picks one."""

from __future__ import annotations

import pytest

from trainer.eval import prompts


@pytest.mark.parametrize("templates", [prompts.OBJECT_PROMPTS, prompts.LIVE_PROMPTS])
def test_each_set_has_25_distinct_templates(templates):
    """25 prompts per subject, as in the paper, none repeated."""
    assert len(templates) == 25 and len(set(templates)) == 25


@pytest.mark.parametrize(("noun", "live"), [("dog", True), ("cat", True), ("person", True),
                                            ("golden retriever dog", True), ("mug", False), ("backpack", False)])
def test_live_subjects_get_the_accessory_prompts(noun, live):
    """Dogs, cats and people get hats and outfits; objects get more backgrounds."""
    assert ("a {0} {1} wearing a red hat" in prompts.templates_for(noun)) is live


def test_subject_prompts_fill_token_and_class():
    assert prompts.subject_prompts("sks", "dog")[0] == "a sks dog in the jungle"


def test_class_prompts_drop_the_identifier():
    """'a {0} {1} ...' becomes 'a dog ...' with single spaces."""
    assert prompts.class_prompts("dog")[0] == "a dog in the jungle"
    assert prompts.class_prompts("mug")[-1] == "a cube shaped mug"


def test_prompt_file_reads_templates_and_skips_comments():
    text = "# mine\n\na {subject} on the moon\n a {0} {1} in space \n"
    assert prompts.read_prompt_file(text) == ("a {0} {1} on the moon", "a {0} {1} in space")
