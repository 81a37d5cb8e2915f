"""Likeness rules: which subjects are people, and what a person's likeness may never be asked for.

A subject whose class noun names a person ([storage.likeness] person_nouns) may not be asked for
sexual content or nudity, whatever the guild's blocklist says; one whose class noun names a minor
(minor_nouns, each also a person) also needs a moderator's review before it is trained. The terms are
matched on the final prompt after undoing the usual ways of dodging a word list: case, compatibility
forms (fullwidth, bold, circled), accents, invisible characters, letters that look Latin in another
script, leetspeak, letters spaced, dotted or dashed apart, and letters repeated. Matches are whole
words, so "Essex", "analysis", "therapist" and "pussycat" pass. Not caught: a word cut into pieces longer
than one letter ("nu de"), and words of other languages; the image safety checker is the next line.

Pure functions, no I/O: storage.lifecycle enforces them and records each refusal in the audit log.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from storage.config import LikenessConfig

PERSON = "person"
MINOR = "minor"

# Sexual and nudity terms, refused in every prompt that uses a person's likeness. Whole words, so
# "cocktail", "class" or "grapes" pass; inflections are listed, since a suffix rule would also make
# "sexton" of "sex". Left out on purpose, as too often innocent: "breast" (chicken), "butt" (cigarette),
# "cum" (laude), "dick" (a name), "strip" (comic), "booby" (a bird). Kept though sometimes innocent, since
# their sexual sense is the usual one: "nude" (a colour), "tits" (birds), "cock" (a rooster), "ass" (a
# donkey), "pussy" (a willow; "pussycat" passes).
REFUSED_TERMS: tuple[str, ...] = (
    # nudity
    "nude", "nudes", "nudity", "nudist", "nudists", "nudism", "naked", "nakedness", "topless", "undressed",
    "undressing", "undress", "unclothed", "disrobed", "disrobing", "no clothes", "no clothing",
    "without clothes", "without clothing", "birthday suit", "in the buff", "skinny dipping", "bare breasted",
    "bare breasts", "exposed breasts", "braless", "no bra", "no panties", "pantyless", "nip slip", "cleavage",
    "lingerie", "panties", "camel toe", "upskirt", "downblouse", "butt naked",
    # anatomy
    "nipple", "nipples", "areola", "areolas", "genitals", "genitalia", "penis", "penises", "vagina", "vaginas",
    "vulva", "clitoris", "testicles", "scrotum", "erection", "boob", "boobs", "tits", "titty", "titties",
    "pussy", "cock", "cocks", "cunt", "ass", "anal",
    # sexual content
    "sex", "sexy", "sexier", "sexiest", "sexual", "sexually", "sexualized", "sexualised", "porn", "porno",
    "pornhub", "pornographic", "pornography", "nsfw", "xxx", "x rated", "rule 34", "hentai", "erotic",
    "erotica", "seductive", "sensual", "lewd", "horny", "aroused", "kinky", "fetish", "bdsm", "bondage",
    "dominatrix", "orgasm", "orgy", "orgies", "masturbate", "masturbating", "masturbation", "intercourse",
    "blowjob", "handjob", "fellatio", "cunnilingus", "cumshot", "cum shot", "creampie", "bukkake",
    "deepthroat", "gangbang", "threesome", "ahegao", "spread legs", "legs spread", "fuck", "fucks", "fucked",
    "fucking", "slut", "slutty", "whore", "hooker", "prostitute", "stripper", "strippers", "striptease",
    "milf", "onlyfans", "rape", "raped", "raping", "rapist",
)

# Letters of other scripts that look Latin, mapped to the letter they imitate. Capitals first (before
# casefolding), since some lower-case forms look like another letter: Greek capital Nu is an N, its
# small form a v.
_UPPER_LOOKALIKES = str.maketrans({
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t",
    "Х": "x", "У": "y", "Ѕ": "s", "І": "i", "Ј": "j", "Ү": "y", "Ԁ": "d",
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o",
    "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
})
_LOWER_LOOKALIKES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "х": "x", "у": "y", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l",
    "ь": "b", "ү": "y", "п": "n", "г": "r", "ё": "e",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "γ": "y", "μ": "u", "ω": "w", "ς": "s",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ց": "g",
    # Latin small capitals and other Latin look-alikes NFKC leaves alone
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴋ": "k",
    "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v",
    "ᴡ": "w", "ʏ": "y", "ᴢ": "z", "ɑ": "a", "ı": "i", "ȷ": "j", "ɡ": "g", "ɩ": "i", "ʋ": "u", "ɒ": "a",
    **{chr(0x1F1E6 + i): chr(ord("a") + i) for i in range(26)},  # regional indicators (flag letters)
})
# Characters that show as nothing or as a blank, though Unicode doesn't call them format characters.
_BLANKS = str.maketrans({c: " " for c in "\u115f\u1160\u3164\uffa0\u2800"})
# What a leetspeak writer puts for each letter. Digits and these symbols are read as letters only inside
# a term's pattern, so "4 dogs" stays "4 dogs".
_LEET = {"a": "a4@", "b": "b8", "e": "e3€", "g": "g9", "i": "i1!|", "l": "l1|", "o": "o0", "s": "s5$z",
         "t": "t7"}
# Separators someone may put between the letters of a word: punctuation and underscores, never a leet
# symbol (those are letters in disguise) and never a space (spaced letters are undone on their own).
_SEPARATORS = r"(?:[^\w\s@$!|€]|_)+"


class Named(Protocol):
    name: str
    class_noun: str


@dataclass(frozen=True)
class Refusal:
    """Why a prompt or a subject was refused: which rule, which term, found where, about which subject."""
    rule: str  # PERSON or MINOR: what the subject's class noun names
    term: str  # the refused term, as listed
    where: str  # "prompt", "name" or "class noun"
    subject: str  # the subject's name

    @property
    def message(self) -> str:
        who = "a child's likeness" if self.rule == MINOR else "a person's likeness"
        if self.where == "prompt":
            return (f"{self.subject!r} is {who}, so prompts that use it can't ask for sexual content or nudity "
                    f"({self.term!r}), whatever this server allows. Reword your prompt without it.")
        return (f"A subject's {self.where} goes into every prompt made with it, and prompts with {who} can't ask "
                f"for sexual content or nudity ({self.term!r}). Choose another {self.where}.")


# --- normalization ----------------------------------------------------------------------------------

def fold(text: str) -> str:
    """Lower-case Latin as it looks: compatibility forms, look-alikes of other scripts, accents and
    invisible characters undone; punctuation, digits and spacing kept (single-spaced)."""
    text = unicodedata.normalize("NFKC", text).translate(_BLANKS).translate(_UPPER_LOOKALIKES).casefold()
    kept = []
    for char in unicodedata.normalize("NFD", text):
        category = unicodedata.category(char)
        if category in ("Mn", "Me", "Cf") or (category == "Cc" and not char.isspace()):
            continue  # accents, zero-width and other invisible characters, control characters
        kept.append(char)
    text = unicodedata.normalize("NFC", "".join(kept).translate(_LOWER_LOOKALIKES))
    return " ".join(text.split())


def views(text: str) -> tuple[str, ...]:
    """The folded text as written, with separators inside words removed ("n.u.d.e", "nu-de"), and with
    separators made spaces and runs of single letters joined ("n u d e", "n. u. d. e")."""
    folded = fold(text)
    glued = re.sub(rf"(?<=\S){_SEPARATORS}(?=\S)", "", folded)
    words = re.sub(_SEPARATORS, " ", folded).split()
    joined: list[str] = []
    for i, word in enumerate(words):
        if len(word) == 1 and i > 0 and len(words[i - 1]) == 1:
            joined[-1] += word
        else:
            joined.append(word)
    return folded, glued, " ".join(joined)


@functools.lru_cache(maxsize=8)
def _patterns(terms: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((term, _pattern(term)) for term in dict.fromkeys(t for t in terms if fold(t)))


def _pattern(term: str) -> re.Pattern[str]:
    """A whole-word pattern for the term: each letter in its leetspeak forms, repeatable ("nuuude"), and
    the words of a phrase with or without spaces between them."""
    words = []
    for word in fold(term).split():
        words.append("".join(f"[{re.escape(_LEET[c])}]+" if c in _LEET else f"{re.escape(c)}+" for c in word))
    return re.compile(r"(?<!\w)" + r"\s*".join(words) + r"(?!\w)")


def find_term(text: str, terms: Iterable[str]) -> str | None:
    """The first of `terms` the text uses as a whole word or phrase, evasions undone; None if none."""
    spellings = views(text)
    for term, pattern in _patterns(tuple(terms)):
        for view in spellings:
            if any(any(c.isalpha() for c in m.group()) for m in pattern.finditer(view)):
                return term  # a match of digits and symbols only ("455") is a number, not a word
    return None


# --- rules ------------------------------------------------------------------------------------------

def kind(class_noun: str, rules: LikenessConfig) -> str | None:
    """MINOR when the class noun names a minor, PERSON when it names a person, else None."""
    if find_term(class_noun, rules.minor_nouns):
        return MINOR
    if find_term(class_noun, rules.person_nouns):
        return PERSON
    return None


def refused_terms(rules: LikenessConfig) -> tuple[str, ...]:
    """The built-in terms and the operator's additions."""
    return REFUSED_TERMS + tuple(rules.refused_terms)


def check_subject(name: str, class_noun: str, rules: LikenessConfig) -> Refusal | None:
    """A person's subject whose name or class noun uses a refused term (it would reach every prompt)."""
    rule = kind(class_noun, rules)
    if rule is None:
        return None
    for where, text in (("name", name), ("class noun", class_noun)):
        term = find_term(text, refused_terms(rules))
        if term is not None:
            return Refusal(rule=rule, term=term, where=where, subject=name)
    return None


def check_prompt(prompts: Iterable[str], used: Iterable[Named], rules: LikenessConfig) -> Refusal | None:
    """The refusal of prompts (as written, and as the worker receives them) that use these subjects: the
    terms are refused when any subject is a person; the refusal names a minor before an adult."""
    people = [(rule, s) for s in used if (rule := kind(s.class_noun, rules)) is not None]
    if not people:
        return None
    rule, subject = min(people, key=lambda p: p[0] != MINOR)
    for text in prompts:
        term = find_term(text, refused_terms(rules))
        if term is not None:
            return Refusal(rule=rule, term=term, where="prompt", subject=subject.name)
    return None


def review_reason(class_noun: str, rules: LikenessConfig) -> str | None:
    """Why a subject is always held for review whatever the guild's policy, or None."""
    if kind(class_noun, rules) == MINOR:
        return f"its class noun ({class_noun!r}) names a minor: training a minor's likeness always needs review"
    return None
