"""storage.likeness: refused terms found through evasions, innocent prompts left alone, class nouns classified."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from storage import likeness
from storage.config import LikenessConfig

RULES = LikenessConfig()


@dataclass(frozen=True)
class Named:
    name: str
    class_noun: str


ANNA = Named("anna", "woman")
LILY = Named("lily", "little girl")
REX = Named("rex", "dog")

EVASIONS = [
    "nude",
    "NUDE",
    "a Nude portrait",
    "n u d e",
    "n.u.d.e",
    "n-u-d-e",
    "n_u_d_e",
    "n . u . d . e",
    "n*u*d*e",
    "n·u·d·e",
    "n / u / d / e",
    "n😀u😀d😀e",
    "N u D e",
    "n\u0336u\u0336d\u0336e\u0336",  # struck through with a combining overlay
    "nu.de",
    "nuuude",
    "nnuuddee",
    "ｎｕｄｅ",  # fullwidth
    "𝐧𝐮𝐝𝐞",  # mathematical bold
    "ⓝⓤⓓⓔ",  # circled
    "ɴᴜᴅᴇ",  # small capitals
    "🇳🇺🇩🇪",  # regional indicators
    "nüde",  # an accent
    "nu\u0301de",  # a combining accent
    "nudе",  # Cyrillic е
    "ΝUDE",  # Greek capital Nu
    "ոսԁе",  # Armenian and Cyrillic look-alikes
    "n\u200bude",  # zero-width space
    "nu\u00adde",  # soft hyphen
    "n\u2060u\u200dd\ufeffe",  # word joiner, zero-width joiner, BOM
    "n\u3164u\u3164d\u3164e",  # Hangul filler, which shows as a blank
    "nud3",
    "n4ked",
    "p0rn",
    "pr0n0graphy is not a word but p0rn0graphy is",
    "$ex",
    "5exy",
    "s e x y",
    "s3x!",
    "@nal",
    "t1tt1es",
    "NSFW",
    "x-rated",
    "no clothes",
    "no-clothes",
    "without   clothes",
    "in her birthday suit",
    "wearing lingerie",
    "seductive pose",
    "n a k e d",
    "n.a.k.e.d.",
    "nakeddd",
    "t0pless",
    "nudes",
    "nudity",
]

INNOCENT = [
    "a photo of anna in Essex",
    "anna walking through Sussex",
    "anna doing a data analysis",
    "anna visiting her therapist",
    "anna in Scunthorpe",
    "anna in a yoga class",
    "anna as a shop assistant",
    "anna holding a cocktail",
    "anna with a pussycat",
    "anna in a cockpit",
    "anna eating grapes",
    "anna holding a sextant",
    "anna at the Middlesex hospital",
    "a banal photo of anna",
    "anna by the canal",
    "anna playing bass at mass",
    "anna at a unisex salon",
    "anna with a sassy smile, reading the annals",
    "anna on an analog camera, 35mm, f/1.8, 4k, 8k uhd",
    "anna in the 1990s, 4 dogs and 5 cats, 455 balloons",
    "J. R. R. Tolkien style portrait of anna",
    "anna as an astronaut on the moon",
    "anna in a classic evening dress",
    "anna with a peacock",
    "anna at a passionate jazz concert",
    "anna wearing a titanium necklace",
    "anna nudging a door open",
]


@pytest.mark.parametrize("prompt", EVASIONS)
def test_refused_terms_are_found_through_evasions(prompt):
    """Case, look-alikes, accents, invisible characters, leetspeak, separators and repeats don't hide a term."""
    assert likeness.find_term(prompt, likeness.REFUSED_TERMS) is not None


@pytest.mark.parametrize("prompt", INNOCENT)
def test_innocent_prompts_pass(prompt):
    """Whole words only: a term inside another word, or digits alone, is not refused."""
    assert likeness.find_term(prompt, likeness.REFUSED_TERMS) is None


@pytest.mark.parametrize(("class_noun", "expected"), [
    ("person", likeness.PERSON),
    ("man", likeness.PERSON),
    ("woman", likeness.PERSON),
    ("face", likeness.PERSON),
    ("young woman", likeness.PERSON),
    ("old man", likeness.PERSON),
    ("human", likeness.PERSON),
    ("child", likeness.MINOR),
    ("kid", likeness.MINOR),
    ("boy", likeness.MINOR),
    ("little girl", likeness.MINOR),
    ("baby", likeness.MINOR),
    ("toddler", likeness.MINOR),
    ("teenage boy", likeness.MINOR),
    ("teenager", likeness.MINOR),
    ("schoolgirl", likeness.MINOR),
    ("dog", None),
    ("cat", None),
    ("mug", None),
    ("snowman", None),
    ("cowboy hat", None),
    ("manatee", None),
    ("surface", None),
])
def test_class_nouns_are_classified(class_noun, expected):
    """A class noun names a minor, a person, or neither; whole words, so a snowman is not a man."""
    assert likeness.kind(class_noun, RULES) == expected


def test_class_noun_lists_come_from_the_settings():
    """An operator's lists replace the built-in ones: here a robot is a person and a boy is not a minor."""
    rules = LikenessConfig(person_nouns=("robot",), minor_nouns=())
    assert (likeness.kind("robot", rules), likeness.kind("boy", rules)) == (likeness.PERSON, None)


def test_a_person_subject_is_refused_the_terms():
    """A prompt using a person's subject is refused, naming the term and saying what to do."""
    refusal = likeness.check_prompt(["anna, nude, on a beach"], [ANNA], RULES)
    assert (refusal.rule, refusal.term, refusal.where, refusal.subject) == ("person", "nude", "prompt", "anna")
    assert "Reword your prompt" in refusal.message


def test_a_subject_that_is_not_a_person_is_not_refused():
    """The likeness rule applies only to people: a dog may be 'naked' (the guild blocklist still applies)."""
    assert likeness.check_prompt(["rex, naked, in the snow"], [REX], RULES) is None


def test_a_minor_is_named_before_an_adult():
    """With a child and an adult in one prompt, the refusal names the child and says it is a child."""
    refusal = likeness.check_prompt(["anna and lily, n.u.d.e"], [ANNA, LILY], RULES)
    assert (refusal.rule, refusal.subject) == ("minor", "lily")
    assert "child's likeness" in refusal.message


def test_the_operators_terms_add_to_the_built_in_ones():
    """refused_terms adds words; the built-in list still applies."""
    rules = LikenessConfig(refused_terms=("gore",))
    assert likeness.check_prompt(["anna, g0re"], [ANNA], rules).term == "gore"
    assert likeness.check_prompt(["anna, nude"], [ANNA], rules).term == "nude"


@pytest.mark.parametrize(("name", "class_noun", "where"), [
    ("nude anna", "woman", "name"),
    ("s3xy lily", "girl", "name"),
    ("anna", "naked woman", "class noun"),
])
def test_a_persons_name_and_class_noun_are_checked(name, class_noun, where):
    """A person's name and class noun reach every prompt: a refused term in them is refused at /train."""
    refusal = likeness.check_subject(name, class_noun, RULES)
    assert refusal is not None and refusal.where == where and f"Choose another {where}" in refusal.message


def test_a_pets_name_is_not_checked():
    """A dog called 'sexy' is not a person's likeness."""
    assert likeness.check_subject("sexy", "dog", RULES) is None


def test_review_reason_is_given_for_a_minor_only():
    """Moderators are told why a minor's subject is held; an adult's gets no such reason."""
    assert "minor" in likeness.review_reason("child", RULES)
    assert likeness.review_reason("woman", RULES) is None
