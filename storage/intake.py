"""Intake of a set of photos, wherever it comes from (/train, `dreambot train`, the toy world).

Each upload is checked and cleaned (storage.photos), then the set: its size and near-duplicates.
Nothing here knows Discord or torch; what a photo is called ("photo2 (IMG_1234.jpg)") is the
caller's label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from storage import photos
from storage.config import PhotoLimits
from storage.errors import PhotoRejected


@dataclass(frozen=True)
class Upload:
    label: str  # how the user knows it: "photo2 (IMG_1234.jpg)"
    filename: str
    content_type: str | None
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Intake:
    accepted: list[photos.CleanPhoto]
    lines: list[str]  # one finding per photo, in the order given
    refused: int

    def refusal(self) -> PhotoRejected:
        return PhotoRejected("Some photos can't be used, so nothing was kept:\n"
                             + "\n".join(f"- {line}" for line in self.lines)
                             + "\nReplace or remove those photos and try again.")


def inspect(uploads: Sequence[Upload | PhotoRejected], limits: PhotoLimits, *, check_count: bool = True) -> Intake:
    """Check and clean each photo, the set's size and near-duplicates (CPU work: run it in a thread).

    An upload that already failed (a download error) comes as its PhotoRejected, in its place.
    """
    lines: list[str] = []
    cleaned: list[tuple[int, str, photos.CleanPhoto]] = []
    refused = 0
    for upload in uploads:
        if isinstance(upload, PhotoRejected):
            lines.append(f"refused: {upload}")
            refused += 1
            continue
        try:
            photo = photos.inspect_photo(upload.data, filename=upload.filename, content_type=upload.content_type,
                                         limits=limits)
        except PhotoRejected as exc:
            lines.append(f"refused: {upload.label.split(' ')[0]}: {exc}")
            refused += 1
            continue
        cleaned.append((len(lines), upload.label, photo))
        lines.append("")
    labels = [label for _, label, _ in cleaned]
    found = [photo for _, _, photo in cleaned]
    marked = photos.mark_duplicates(found, photos.find_duplicates(found, limits), labels=labels)
    for (index, label, _), photo in zip(cleaned, marked, strict=True):
        note = " ".join(photo.findings) or "looks good."
        lines[index] = f"{label}: {photo.width}x{photo.height}, {note}"
    if not refused and check_count:
        photos.check_count(len(marked), limits)
    return Intake(accepted=marked, lines=lines, refused=refused)
