"""Storage commands for `dreambot`. Heavy imports (Pillow, numpy, scikit-image) happen inside the commands."""

from __future__ import annotations

import argparse
import stat
import sys
from pathlib import Path

from storage.config import Config, PhotoLimits
from storage.errors import PhotoRejected


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_photo_commands(sub)


# --- photos: check-photos, sample-photos -------------------------------------------------------

def _add_photo_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-photos", help="check photo files the way the bot checks uploads")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=check_photos)
    p = sub.add_parser("sample-photos", help="write real sample photographs (one with GPS EXIF) to a folder")
    p.add_argument("dir", metavar="DIR")
    p.set_defaults(func=sample_photos)


def check_photos(args: argparse.Namespace, cfg: Config) -> int:
    """One line per file, OK or REFUSED; near-duplicates are looked for across the files given.

    Exit status 0 when every file is accepted, 1 when any is refused.
    """
    from storage import photos  # Pillow and numpy load only for this command

    limits = cfg.storage.photos
    lines: list[str] = []
    accepted: list[tuple[int, photos.CleanPhoto]] = []
    for n, path in enumerate(args.files):
        try:
            photo = photos.inspect_photo(_read(path, limits), filename=path, content_type=None, limits=limits)
        except PhotoRejected as exc:
            lines.append(f"REFUSED {exc}")
            continue
        lines.append("")
        accepted.append((n, photo))
    names = [photos.shown_name(args.files[n]) for n, _ in accepted]
    found = [photo for _, photo in accepted]
    marked = photos.mark_duplicates(found, photos.find_duplicates(found, limits), labels=names)
    for (n, _), photo, name in zip(accepted, marked, names, strict=True):
        lines[n] = f"OK   {name}  {photo.width}x{photo.height}"
        if photo.findings:
            lines[n] += "  warnings: " + "; ".join(f.rstrip(".") for f in photo.findings)
    print("\n".join(lines))
    return 0 if len(accepted) == len(args.files) else 1


def _read(path: str, limits: PhotoLimits) -> bytes:
    """The file's bytes, or PhotoRejected for anything that is not a readable regular file of allowed size."""
    from storage.photos import check_file_size, shown_name

    name = shown_name(path)
    try:
        info = Path(path).stat()
        if not stat.S_ISREG(info.st_mode):  # never open a folder, pipe or device
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device or pipe"
            raise PhotoRejected(f"{name}: this is {kind}, not a photo file. Give the path of a photo.")
        check_file_size(info.st_size, filename=path, limits=limits)
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise PhotoRejected(f"{name}: there is no such file. Check the path.") from None
    except PermissionError:
        raise PhotoRejected(f"{name}: permission denied. Check that you may read the file.") from None
    except OSError as exc:
        raise PhotoRejected(f"{name}: the file cannot be read ({exc.strerror or exc}).") from None


def sample_photos(args: argparse.Namespace, cfg: Config) -> int:
    """Write the scikit-image sample photographs to DIR."""
    from storage.sample_photos import write_sample_photos

    try:
        paths = write_sample_photos(Path(args.dir))
    except OSError as exc:
        print(f"dreambot: cannot write the sample photos to {args.dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    print(f"wrote {len(paths)} sample photos; check them with: dreambot check-photos {args.dir}/*.jpg")
    return 0
