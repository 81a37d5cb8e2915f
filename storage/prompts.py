"""Prompts as people write them ("rex in space") turned into what the model was trained on.

A subject's name becomes its identifier token and class ("sks dog"); a prompt that starts with the
subject gets "a photo of " in front, the phrasing DreamBooth trains with. Only the invoker's own
subjects are looked up, so nobody can use someone else's adapter by naming it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from storage.errors import PromptRefused, SubjectError
from storage.guilds import word_pattern
from storage.subjects import Subject

MAX_PROMPT = 400
_NOT_READY = {
    "draft": "is waiting for your confirmation: press Confirm on the /train reply, or run /train again",
    "consented": "is waiting for a moderator's review (or for room in the queue); you'll be told when it starts",
    "queued": "is still queued for training; /status shows its place",
    "training": "is still training; its progress is posted in the channel",
    "failed": "failed to train; run /train again with other photos",
    "cancelled": "was cancelled; run /train again to train it",
    "revoked": "can't be used any more: its consent was revoked or a moderator took it away",
}


@dataclass(frozen=True)
class Expanded:
    text: str  # the prompt the worker receives
    subjects: tuple[Subject, ...]  # the subjects it uses, in the order named


def _name_pattern(name: str) -> re.Pattern[str]:
    return word_pattern(name)


def expand(prompt: str, owned: Sequence[Subject], chosen: Subject | None = None) -> Expanded:
    """Substitute the owner's subject names; PromptRefused when none is named and none was chosen."""
    text = " ".join(prompt.split())
    if not text:
        raise PromptRefused("Your prompt is empty. Describe the image, for example: rex in space.")
    if len(text) > MAX_PROMPT:
        raise PromptRefused(f"Your prompt is {len(text)} characters long; the limit is {MAX_PROMPT}. Shorten it.")
    used: list[Subject] = []
    # Longest names first, so "rex junior" wins over "rex"; tokens are inserted as placeholders
    # first so a token can never be matched as another subject's name.
    marks: dict[str, str] = {}
    for subject in sorted(owned, key=lambda s: -len(s.name)):
        pattern = _name_pattern(subject.name)
        if pattern.search(text):
            mark = chr(0xE000 + len(marks))  # a private-use character: never \w, never typed
            marks[mark] = f"{subject.token} {subject.class_noun}"
            text = pattern.sub(mark, text)
            used.append(subject)
    if chosen is not None and chosen.id not in {s.id for s in used}:
        mark = chr(0xE000 + len(marks))  # a private-use character: never \w, never typed
        marks[mark] = f"{chosen.token} {chosen.class_noun}"
        text = f"{mark} {text}"
        used.insert(0, chosen)
    if not used:
        names = ", ".join(sorted(s.name for s in owned)) or "none yet (train one with /train)"
        raise PromptRefused("Your prompt names none of your subjects. Write its name in the prompt, "
                            f"like 'rex in space', or pick one with the subject option. Yours: {names}.")
    if text[0] in marks:
        text = "a photo of " + text
    for mark, words in marks.items():
        text = text.replace(mark, words)
    return Expanded(text=text, subjects=tuple(used))


def require_usable(subject: Subject) -> None:
    """SubjectError with advice unless the subject is trained and usable."""
    if subject.state != "trained" or subject.adapter_artifact_id is None:
        reason = _NOT_READY.get(subject.state, "has no trained adapter yet")
        raise SubjectError(f"Your subject {subject.name!r} {reason}.")


def blocked_term(prompt: str, terms: Sequence[str]) -> str | None:
    """The first blocked term the prompt uses as a whole word or phrase, or None."""
    return next((term for term in terms if word_pattern(term).search(prompt)), None)


def check_blocklist(prompt: str, terms: Sequence[str]) -> None:
    term = blocked_term(prompt, terms)
    if term is not None:
        raise PromptRefused(f"This server doesn't allow {term!r} in prompts. Reword your prompt without it.")


def check_subject_words(*, name: str, class_noun: str, terms: Sequence[str]) -> None:
    """A subject's name and class noun reach every prompt made with it: the blocklist applies to them too."""
    for what, text in (("name", name), ("class noun", class_noun)):
        term = blocked_term(text, terms)
        if term is not None:
            raise PromptRefused(f"This server doesn't allow {term!r}, and a subject's {what} goes into every "
                                "prompt made with it. Choose another.")
