"""The DreamBooth paper's evaluation prompts: 25 per subject, one set for objects, one for live subjects.

Source: Ruiz et al., "DreamBooth: Fine Tuning Text-to-Image Diffusion Models for Subject-Driven
Generation" (CVPR 2023), supplementary Table 2, and the dataset repository google/dreambooth
(README, "Prompts"). `{0}` is the unique identifier token, `{1}` the class noun. Both sets start
with 10 recontextualisation prompts and end with the same 5 property changes; objects get 10 more
recontextualisations, live subjects 10 accessorisations. The paper uses the live set for its dogs
and cats, the object set for everything else.
"""

from __future__ import annotations

RECONTEXTUALISATION = (
    "a {0} {1} in the jungle",
    "a {0} {1} in the snow",
    "a {0} {1} on the beach",
    "a {0} {1} on a cobblestone street",
    "a {0} {1} on top of pink fabric",
    "a {0} {1} on top of a wooden floor",
    "a {0} {1} with a city in the background",
    "a {0} {1} with a mountain in the background",
    "a {0} {1} with a blue house in the background",
    "a {0} {1} on top of a purple rug in a forest",
)
OBJECT_ONLY = (
    "a {0} {1} with a wheat field in the background",
    "a {0} {1} with a tree and autumn leaves in the background",
    "a {0} {1} with the Eiffel Tower in the background",
    "a {0} {1} floating on top of water",
    "a {0} {1} floating in an ocean of milk",
    "a {0} {1} on top of green grass with sunflowers around it",
    "a {0} {1} on top of a mirror",
    "a {0} {1} on top of the sidewalk in a crowded street",
    "a {0} {1} on top of a dirt road",
    "a {0} {1} on top of a white rug",
)
ACCESSORISATION = (
    "a {0} {1} wearing a red hat",
    "a {0} {1} wearing a santa hat",
    "a {0} {1} wearing a rainbow scarf",
    "a {0} {1} wearing a black top hat and a monocle",
    "a {0} {1} in a chef outfit",
    "a {0} {1} in a firefighter outfit",
    "a {0} {1} in a police outfit",
    "a {0} {1} wearing pink glasses",
    "a {0} {1} wearing a yellow shirt",
    "a {0} {1} in a purple wizard outfit",
)
PROPERTY_CHANGE = (
    "a red {0} {1}",
    "a purple {0} {1}",
    "a shiny {0} {1}",
    "a wet {0} {1}",
    "a cube shaped {0} {1}",
)
OBJECT_PROMPTS = RECONTEXTUALISATION + OBJECT_ONLY + PROPERTY_CHANGE
LIVE_PROMPTS = RECONTEXTUALISATION + ACCESSORISATION + PROPERTY_CHANGE

# Class nouns that get the live-subject set (the paper's live subjects are dogs and cats; people
# and other animals wear hats and outfits just as well).
LIVE_CLASSES = frozenset({
    "dog", "puppy", "cat", "kitten", "person", "man", "woman", "boy", "girl", "child", "kid", "baby",
    "animal", "pet", "horse", "bird", "parrot", "rabbit", "bunny", "hamster", "guinea pig", "fox", "bear",
    "monkey", "cow", "pig", "sheep", "goat", "duck", "chicken", "lion", "tiger", "panda", "teddy",
})


def is_live(class_noun: str) -> bool:
    """Whether the class is a live subject (its last word, so 'golden retriever dog' counts)."""
    noun = " ".join(class_noun.lower().split())
    return noun in LIVE_CLASSES or noun.split(" ")[-1] in LIVE_CLASSES


def templates_for(class_noun: str) -> tuple[str, ...]:
    return LIVE_PROMPTS if is_live(class_noun) else OBJECT_PROMPTS


def subject_prompts(token: str, class_noun: str, templates: tuple[str, ...] | None = None) -> list[str]:
    """The 25 prompts for a subject, e.g. 'a sks dog in the jungle'."""
    return [t.format(token, class_noun) for t in (templates or templates_for(class_noun))]


def class_prompts(class_noun: str, templates: tuple[str, ...] | None = None) -> list[str]:
    """The same prompts without the identifier, e.g. 'a dog in the jungle' (for PRES)."""
    return [" ".join(t.format("", class_noun).split()) for t in (templates or templates_for(class_noun))]


def read_prompt_file(text: str) -> tuple[str, ...]:
    """Templates from a prompts file: one per line, blank lines and '#' comments skipped.

    A line holds {0} and {1} (token, class), or {subject} (both), or neither (then it is used as is).
    """
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line.replace("{subject}", "{0} {1}"))
    return tuple(out)
