"""Photo intake: check one uploaded file, clean it into a plain RGB JPEG, then check the set.

The bytes alone decide what a file is; the name and content type someone declared appear in
messages only, never in a path. Every refusal is a PhotoRejected whose message says what to send
instead. A cleaned photo is re-encoded from its pixels alone, so no EXIF (GPS included), XMP, ICC
profile, text chunk or comment survives.

Size limits are judged on the upload's own dimensions, read from its header; the kept copy is
downscaled so its longest side is at most limits.max_side (never enlarged). A JPEG is decoded at
1/2, 1/4 or 1/8 scale when that still leaves at least max_side (libjpeg scales while decoding), so
a 40-megapixel phone photo costs a fraction of a full decode in time and memory.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageOps

from storage import files
from storage.config import PhotoLimits
from storage.errors import PhotoRejected
from storage.photo_checks import blur_score, dhash, hamming

log = logging.getLogger(__name__)
pillow_heif.register_heif_opener()

ACCEPTED = ("JPEG", "PNG", "WEBP", "HEIF")  # Pillow's names for the formats we decode
SEND = "Send a JPEG, PNG, WebP or HEIC photo instead."
MIB = 1 << 20

_REFUSED_KINDS = {
    "GIF": "a GIF image", "BMP": "a BMP image", "TIFF": "a TIFF image", "AVIF": "an AVIF image",
    "PDF": "a PDF document", "ZIP": "a ZIP archive or office document", "EXE": "a program",
    "VIDEO": "a video or other media file", "MARKUP": "an HTML, SVG or XML file", "TEXT": "a text file",
}
_MAGIC = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"), (b"PK\x03\x04", "ZIP"), (b"MZ", "EXE"), (b"\x7fELF", "EXE"),
)
_HEIF_MAJOR = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_GENERIC = {b"mif1", b"msf1"}  # also listed by AVIF files, so AVIF is ruled out first
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_RESIZABLE = ("L", "RGB", "RGBA", "CMYK")  # modes Pillow resamples properly (RGBA with premultiplied alpha)
_QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
STORED_SUFFIX = ".jpg"
FLAT_SUFFIX = ".webp"
FLAT_COLOURS = 256  # at most this many distinct colours (a drawing, a screenshot): kept lossless instead
# 4:4:4 (no chroma subsampling) at quality 92: no visible loss; bench/intake.py's 40 MP photo keeps 460 KB.
JPEG_SETTINGS = {"quality": 92, "subsampling": 0}


@dataclass(frozen=True)
class CleanPhoto:
    data: bytes = field(repr=False)  # the cleaned pixels as kept: 8-bit RGB JPEG without any metadata
    suffix: str  # file name suffix for `data`, with its dot
    width: int  # as kept: the longest side is at most limits.max_side
    height: int
    original_size: tuple[int, int]  # width and height of the upload, upright, before downscaling
    format: str  # the real format of the upload: one of ACCEPTED
    findings: tuple[str, ...]  # warnings for the person who sent it; empty when all is well
    dhash: int  # 64-bit perceptual hash, for near-duplicate checks
    blur_score: float  # Laplacian variance; under limits.blur_threshold looks blurry

    @property
    def size_bytes(self) -> int:
        """Bytes the photo takes in storage, what a per-user quota counts."""
        return len(self.data)


# --- one photo ---------------------------------------------------------------------------------

def inspect_photo(data: bytes, *, filename: str, content_type: str | None,
                  limits: PhotoLimits) -> CleanPhoto:
    """Check an upload and return it cleaned, with warnings; raise PhotoRejected saying why not."""
    name = shown_name(filename)
    if not data:
        raise PhotoRejected(f"{name}: the file is empty (0 bytes). Send the photo again.")
    check_file_size(len(data), filename=filename, limits=limits)
    fmt = sniff_format(data)
    if fmt not in ACCEPTED:
        raise PhotoRejected(_wrong_format(name, fmt, content_type))
    if fmt == "PNG" and not _png_complete(data):
        raise PhotoRejected(_cut_off(name))
    image, (width, height), box = _decode(data, fmt, name, limits)
    findings: list[str] = []
    if getattr(image, "is_animated", False):
        findings.append("it has several frames: only the first one is used.")
    try:
        original = (height, width) if _orientation(image) in _QUARTER_TURNS else (width, height)
        if box is not None:  # shrink now, before turning it upright: `box` is in the stored orientation
            image = _shrunk(image, _fitted((width, height), limits.max_side), box)
        rgb = _to_plain_rgb(image, findings, limits.max_side)
    except Exception:  # Pillow raises many types on hostile data; none may escape as a traceback
        log.debug("could not convert %s", name, exc_info=True)
        raise PhotoRejected(_damaged(name)) from None
    return _finish(rgb, original, fmt, findings, limits)


def check_file_size(size: int, *, filename: str, limits: PhotoLimits) -> None:
    """Refuse a file over limits.max_file_mb; callers that know the size can ask before downloading."""
    if size > limits.max_file_mb * MIB:
        raise PhotoRejected(f"{shown_name(filename)}: the file is {size / MIB:.1f} MB and the limit is "
                            f"{limits.max_file_mb} MB. Send a smaller copy of the photo.")


def shown_name(filename: str) -> str:
    """The declared name made safe to print: last path part, no control characters, at most 60 long."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(c for c in base if not unicodedata.category(c).startswith("C")).strip()
    if len(clean) > 60:
        clean = clean[:57] + "..."
    return clean or "photo"


def sniff_format(data: bytes) -> str:
    """The real format from the first bytes: one of ACCEPTED, a key of _REFUSED_KINDS, or 'UNKNOWN'."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        return _iso_brand(data)
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    head = data[:1024]
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at 1024 bytes is still text
        text = head[:exc.start].decode("utf-8-sig", "replace") if exc.start > len(head) - 4 else None
    if text is not None and all(c.isprintable() or c in "\t\r\n\f" for c in text):
        return "MARKUP" if text.lstrip().startswith("<") else "TEXT"
    return "UNKNOWN"


def _iso_brand(data: bytes) -> str:
    """HEIF, AVIF or something else (MP4, MOV) from an ISO media file's ftyp box."""
    end = min(int.from_bytes(data[:4], "big"), len(data), 256)
    major = data[8:12]
    brands = {major} | {data[i:i + 4] for i in range(16, end - 3, 4)}
    if major in _HEIF_MAJOR:
        return "HEIF"
    if brands & {b"avif", b"avis"}:
        return "AVIF"
    return "HEIF" if brands & (_HEIF_MAJOR | _HEIF_GENERIC) else "VIDEO"


def _png_complete(data: bytes) -> bool:
    """Whether the PNG's chunks run whole up to IEND (Pillow accepts a file cut inside the last ones)."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        pos += 12 + length
        if kind == b"IEND":
            return pos <= len(data)
    return False


def _decode(data: bytes, fmt: str, name: str, limits: PhotoLimits
            ) -> tuple[Image.Image, tuple[int, int], tuple[float, float, float, float] | None]:
    """Open with only the sniffed format's decoder, check the size from the header, then decode frame 0.

    Returns the image, the size its header gave and, for a JPEG, the box of the decoded pixels that
    holds the photo. A JPEG is decoded at the smallest of 1/8, 1/4, 1/2 or full scale whose sides
    are both at least those of the header size fitted into max_side: its long side is then at least
    max_side whichever way EXIF turns it. At 1/n scale libjpeg rounds the sides up, so the box's
    right and bottom edges can fall inside the last column and row.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was set True: photo intake needs it False "
                           "to refuse truncated files; find and remove the code that sets it.")
    # Pillow only warns between MAX_IMAGE_PIXELS and twice that; here every such warning is a refusal
    # (the filter is process-wide, but the header check below refuses the same images without it).
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[fmt])
            size = image.size
            _check_dimensions(size, name, limits)
            box = None
            if fmt == "JPEG":  # not HEIF: its draft() swaps in an embedded thumbnail, which may not match
                drafted = image.draft("RGB", _fitted(size, limits.max_side))
                box = drafted[1] if drafted else None
            image.load()
        except PhotoRejected:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise PhotoRejected(_too_many_pixels(name, limits, None)) from None
        except Exception as exc:  # Pillow raises many types on hostile data; none may escape
            log.debug("could not decode %s as %s", name, fmt, exc_info=True)
            cut = isinstance(exc, OSError) and "truncated" in str(exc)
            raise PhotoRejected(_cut_off(name) if cut else _damaged(name)) from None
    return image, size, box


def _fitted(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """`size` scaled down so its longest side is max_side; unchanged if it fits already (never enlarged)."""
    width, height = size
    scale = max_side / max(width, height)
    if scale >= 1:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrunk(image: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float] | None = None
            ) -> Image.Image:
    """`image` (or its `box`) resampled to `size`, or `image` itself if that is its size already."""
    if size == image.size and box in (None, (0, 0, *size)):
        return image
    return image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 to 8, 1 when absent or unreadable)."""
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # broken EXIF: _to_plain_rgb says so and keeps the pixels as stored
        return 1


def _pixel_limit(limits: PhotoLimits) -> int:
    """Ours, or Pillow's own bomb limit if lower: no image may pass on a mere warning."""
    pillow = Image.MAX_IMAGE_PIXELS
    return min(limits.max_pixels, pillow) if pillow else limits.max_pixels


def _check_dimensions(size: tuple[int, int], name: str, limits: PhotoLimits) -> None:
    width, height = size
    if width * height > _pixel_limit(limits):
        raise PhotoRejected(_too_many_pixels(name, limits, size))
    if min(width, height) < limits.min_side:
        raise PhotoRejected(f"{name}: the photo is only {width}x{height} pixels; its short side must be at "
                            f"least {limits.min_side}. Send the original photo, not a thumbnail or a crop.")


def _to_plain_rgb(image: Image.Image, findings: list[str], max_side: int) -> Image.Image:
    """Upright, at most max_side long, sRGB, 8-bit RGB on white, as a new image without any metadata."""
    icc = image.info.get("icc_profile")
    try:
        ImageOps.exif_transpose(image, in_place=True)  # no copy: a 40 MP PNG or HEIC is 160 MB
    except Exception:  # broken EXIF: keep the pixels as stored
        log.debug("unreadable EXIF orientation", exc_info=True)
        findings.append("its orientation tag could not be read: check that it is the right way up.")
    if image.mode in _SIXTEEN_BIT:
        scaled = np.asarray(image).astype(np.float64) / 257  # 0..65535 onto 0..255; convert() would clip
        image = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode not in _RESIZABLE:  # palette and 1-bit: a resize of those would pick pixels, not blend
        image = image.convert("RGB")
    # Shrink before compositing, colour conversion and copying, so those work on the kept pixels only.
    image = _shrunk(image, _fitted(image.size, max_side))
    if image.mode == "RGBA":
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
    if icc and image.mode in ("RGB", "RGBA", "CMYK"):
        image = _to_srgb(image.convert("RGB") if image.mode == "RGBA" else image, icc)
    return Image.fromarray(np.asarray(image.convert("RGB")))


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """Apply an embedded colour profile; if it is unusable, the pixels are kept as they are."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        log.debug("ignored an unusable ICC profile", exc_info=True)
        return image


def _finish(rgb: Image.Image, original: tuple[int, int], fmt: str, findings: list[str],
            limits: PhotoLimits) -> CleanPhoto:
    """Warn on the upload's own resolution and on blur, and encode the kept pixels."""
    if min(original) < limits.warn_side:
        findings.append(f"low resolution ({original[0]}x{original[1]}): photos at least {limits.warn_side} "
                        "pixels on the short side train better.")
    sharpness = blur_score(rgb)
    if sharpness < limits.blur_threshold:
        findings.append(f"it looks blurry (sharpness {sharpness:.0f}, under {limits.blur_threshold:.0f}): "
                        "a sharper photo trains better.")
    data, suffix = encode(rgb)
    return CleanPhoto(data=data, suffix=suffix, width=rgb.width, height=rgb.height,
                      original_size=original, format=fmt, findings=tuple(findings), dhash=dhash(rgb),
                      blur_score=sharpness)


def encode(rgb: Image.Image) -> tuple[bytes, str]:
    """The kept bytes and their suffix: a photograph as high-quality JPEG; an image of few flat colours
    (a drawing, a screenshot, a generated scene) as lossless WebP, which keeps its edges exact and is
    smaller than a JPEG of it. `rgb` carries no info, so no metadata is written either way."""
    buf = io.BytesIO()
    if rgb.getcolors(maxcolors=FLAT_COLOURS) is not None:
        rgb.save(buf, format="WEBP", lossless=True, exif=b"", icc_profile=None)
        return buf.getvalue(), FLAT_SUFFIX
    rgb.save(buf, format="JPEG", **JPEG_SETTINGS)  # nothing but the JFIF header is written
    return buf.getvalue(), STORED_SUFFIX


def _wrong_format(name: str, fmt: str, content_type: str | None) -> str:
    if fmt in _REFUSED_KINDS:
        return f"{name}: this file is {_REFUSED_KINDS[fmt]}, whatever its name says. {SEND}"
    claim = ""
    if content_type and content_type.isprintable() and len(content_type) < 60:
        claim = f" (it was sent as {content_type})"
    return f"{name}: this file is not a photo dreambot can read{claim}. {SEND}"


def _too_many_pixels(name: str, limits: PhotoLimits, size: tuple[int, int] | None) -> str:
    have = f"{size[0]}x{size[1]} pixels" if size else "more pixels than allowed"
    limit = _pixel_limit(limits) / 1e6
    return f"{name}: the image is {have}; the limit is {limit:.0f} megapixels. Send a smaller copy."


def _cut_off(name: str) -> str:
    return f"{name}: the file is cut off (an incomplete upload or a damaged copy). Send the photo again."


def _damaged(name: str) -> str:
    return (f"{name}: the file is damaged and could not be read. Open it on your device, save a fresh "
            f"copy and send that. {SEND}")


# --- a set of photos ---------------------------------------------------------------------------

def check_count(count: int, limits: PhotoLimits) -> None:
    """Refuse a set with too few or too many photos for one subject."""
    if count < limits.min_per_subject:
        missing = limits.min_per_subject - count
        raise PhotoRejected(f"A subject needs at least {limits.min_per_subject} photos and {count} "
                            f"{'was' if count == 1 else 'were'} sent. Add {missing} more of the same subject, "
                            "ideally with different angles, light and backgrounds.")
    if count > limits.max_per_subject:
        extra = count - limits.max_per_subject
        raise PhotoRejected(f"At most {limits.max_per_subject} photos can be used for one subject and {count} "
                            f"were sent. Leave out {extra}, keeping the sharpest and most varied ones.")


def find_duplicates(photos: list[CleanPhoto], limits: PhotoLimits) -> list[tuple[int, int, int]]:
    """Near-duplicate pairs as (i, j, distance) with i < j, indexes into `photos`."""
    return [(i, j, d)
            for i, a in enumerate(photos) for j in range(i + 1, len(photos))
            if (d := hamming(a.dhash, photos[j].dhash)) <= limits.duplicate_distance]


def check_set(photos: list[CleanPhoto], limits: PhotoLimits) -> list[tuple[int, int, int]]:
    """Refuse a set of the wrong size; return its near-duplicate pairs (see find_duplicates)."""
    check_count(len(photos), limits)
    return find_duplicates(photos, limits)


def mark_duplicates(photos: list[CleanPhoto], pairs: list[tuple[int, int, int]],
                    labels: list[str] | None = None) -> list[CleanPhoto]:
    """Copies of `photos` where the later photo of each pair says which earlier one it repeats.

    `labels` names the photos in the message; by default "photo 1", "photo 2", ...
    """
    labels = labels or [f"photo {n}" for n in range(1, len(photos) + 1)]
    repeats: dict[int, int] = {}  # later photo -> the earliest photo it repeats
    for i, j, _ in sorted(pairs):
        repeats.setdefault(j, i)
    marked = []
    for n, photo in enumerate(photos):
        if n in repeats:
            note = (f"it looks like a near-duplicate of {labels[repeats[n]]}: "
                    "a different pose, angle or background teaches more.")
            photo = dataclasses.replace(photo, findings=(*photo.findings, note))
        marked.append(photo)
    return marked


def store_photo(data_dir: Path, photo: CleanPhoto) -> tuple[str, str]:
    """Keep the cleaned photo, content-addressed; returns (sha256, path relative to data_dir)."""
    return files.put_blob(data_dir, photo.data, photo.suffix)
