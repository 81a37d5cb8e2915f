"""The contexts a toy-world DreamBooth run is asked to put its subject in, and how each sample is judged.

The subject's four photos show it alone, big, near the middle, on red, green, blue and white
(`scenes.PHOTO_BACKGROUNDS`). The training contexts ask for exactly that. The held-out ones ask for
what no photo shows, and that the base model can draw for a plain circle (its rate on each is
measured beside the run's: `quality.base_rates`):
    backgrounds  purple, cyan, pink, grey (`scenes.HELDOUT_BACKGROUNDS`);
    size, place  "a photo of a small sks circle in the top left on a blue background";
    a neighbour  "a photo of sks circle next to a red square on a white background".
Each sample is judged twice:
    subject  the subject is there, strictly (`classifier.Reading.subject_pattern`; with a neighbour,
             `subject_beside`: the subject, the named object, nothing else);
    prompt   the rest of the prompt is right: the background, and where asked the place, the small
             size and the neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.toyworld import classifier, scenes

SMALL_MAX_RADIUS = 0.21  # "small": half-width at most this share of the side (world: 0.13-0.18; photos: 0.26-0.32)


@dataclass(frozen=True)
class Context:
    name: str
    heldout: bool  # no training photo shows it
    background: str
    size_word: str = ""  # "small"
    place: str = ""  # one of scenes.PLACES
    beside: tuple[str, str] | None = None  # (colour, shape) of a second object

    def scene(self) -> scenes.Scene:
        """The context as a scene of a plain circle (for its caption)."""
        other = None if self.beside is None else scenes.Scene(self.beside[1], self.beside[0], self.background,
                                                               0.75, 0.5, 0.15)
        return scenes.Scene(scenes.SUBJECT_SHAPE, "", self.background, 0.5, 0.5, 0.25, size_word=self.size_word,
                            place=self.place, other=other)

    def prompt(self, token: str) -> str:
        """'a photo of sks circle on a purple background'; with a size, 'a photo of a small sks circle ...'."""
        return scenes.caption(self.scene(), colour=False, word=token, word_replaces_article=not self.size_word)

    def class_prompt(self) -> str:
        """The same context for any circle: what the base model is asked, to show it can draw the context."""
        return scenes.caption(self.scene(), colour=False)

    def subject_right(self, reading: classifier.Reading) -> bool:
        if self.beside is not None:
            return reading.subject_beside(self.beside[1], self.beside[0])
        return reading.subject_pattern

    def prompt_right(self, reading: classifier.Reading) -> bool:
        """The background, and where asked the place, the size and the neighbour, are as the prompt says."""
        if reading.background != self.background:
            return False
        target = self._target(reading)
        if (self.place or self.size_word) and target is None:
            return False
        if self.place:
            qx, qy = scenes.PLACES[self.place]
            if (target.cx > 0.5) != bool(qx) or (target.cy > 0.5) != bool(qy):
                return False
        if self.size_word == "small" and target.radius > SMALL_MAX_RADIUS:
            return False
        if self.beside is not None:
            colour, shape = self.beside
            return any(o.is_plain(shape, colour) for o in reading.objects)
        return True

    def circle_right(self, reading: classifier.Reading) -> bool:
        """For the class prompt: a circle (not the subject) stands in the context asked for, nothing else beside it."""
        target = self._target(reading)
        wanted = 1 if self.beside is None else 2
        return (target is not None and target.shape == scenes.SUBJECT_SHAPE and len(reading.objects) == wanted
                and reading.clutter <= classifier.MAX_CLUTTER and self.prompt_right(reading))

    def _target(self, reading: classifier.Reading) -> classifier.Blob | None:
        """The object the prompt's circle is: the subject if one is there, else the largest object."""
        if self.beside is None:
            return reading.subject() or reading.main
        colour, shape = self.beside
        rest = [o for o in reading.objects if not o.is_plain(shape, colour)]
        return reading.subject() or (rest[0] if rest else None)


TRAINING = tuple(Context(bg, False, bg) for bg in scenes.PHOTO_BACKGROUNDS)
HELDOUT = (
    *(Context(bg, True, bg) for bg in scenes.HELDOUT_BACKGROUNDS),
    Context("small, top left", True, "blue", size_word="small", place="top left"),
    Context("small, bottom right", True, "white", size_word="small", place="bottom right"),
    Context("beside a red square", True, "white", beside=("red", "square")),
    Context("beside a green triangle", True, "blue", beside=("green", "triangle")),
)
CONTEXTS = TRAINING + HELDOUT
