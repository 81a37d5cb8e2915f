"""Photo intake: what is refused, what is cleaned and how, and the warnings a person sees."""

from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import replace

import pytest
from PIL import ExifTags, Image, ImageFile

from storage import cli, photos
from storage.config import PhotoLimits
from storage.errors import PhotoRejected
from storage.photos import (
    check_count,
    check_file_size,
    check_set,
    find_duplicates,
    inspect_photo,
    mark_duplicates,
    store_photo,
)
from storage.sample_photos import SAMPLES, write_sample_photos
from tests.storage import photo_factory as pf

LIMITS = PhotoLimits()


def inspect(data: bytes, name: str = "photo.jpg", limits: PhotoLimits = LIMITS, content_type=None):
    return inspect_photo(data, filename=name, content_type=content_type, limits=limits)


def refusal(data: bytes, name: str = "photo.jpg", limits: PhotoLimits = LIMITS) -> str:
    with pytest.raises(PhotoRejected) as caught:
        inspect(data, name, limits)
    return str(caught.value)


# --- formats -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, expected", [("JPEG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WEBP"), ("HEIF", "HEIF")])
def test_accepts_each_photo_format(fmt, expected):
    """JPEG, PNG, WebP and HEIC photos are accepted and keep their size."""
    photo = inspect(pf.encode(pf.real_photo(), fmt))
    assert (photo.format, photo.width, photo.height) == (expected, 640, 427)


def test_bytes_decide_the_format_not_the_name():
    """A PNG named .jpg and sent as image/jpeg is read as the PNG it is."""
    assert inspect(pf.png(), "holiday.jpg", content_type="image/jpeg").format == "PNG"


@pytest.mark.parametrize("kind", ["GIF", "BMP", "TIFF", "AVIF", "PDF", "text", "html", "svg", "exe", "zip",
                                  "mp4", "random"])
def test_refuses_other_files_named_jpg(kind):
    """Anything but JPEG, PNG, WebP or HEIC is refused whatever its name, and the reply says what to send."""
    message = refusal(pf.impostor(kind), "me.jpg")
    assert message.startswith("me.jpg: ") and "JPEG, PNG, WebP or HEIC" in message


def test_heic_pixels_survive_decoding():
    """A HEIC photo decodes to the photo it encodes."""
    original = pf.real_photo()
    photo = inspect(pf.encode(original, "HEIF", quality=95))
    assert pf.mean_difference(pf.decode(photo.data), original) < 6


# --- broken and hostile files ------------------------------------------------------------------

def test_refuses_empty_file():
    """A 0-byte upload is refused as empty."""
    assert "empty" in refusal(b"")


@pytest.mark.parametrize("fmt, params", [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}),
                                         ("WEBP", {}), ("HEIF", {})])
@pytest.mark.parametrize("keep", [0.3, 0.9, -1])
def test_refuses_truncated_file(fmt, params, keep):
    """A file cut anywhere, even by its last byte, is refused rather than decoded with a grey tail."""
    data = pf.encode(pf.real_photo(), fmt, **params)
    cut = data[:keep] if keep < 0 else data[:int(len(data) * keep)]
    refusal(cut)


def test_truncation_detection_does_not_rely_on_the_global_flag(monkeypatch):
    """If some code sets LOAD_TRUNCATED_IMAGES, intake stops loudly instead of accepting cut files."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        inspect(pf.jpeg())


@pytest.mark.parametrize("size, max_pixels", [
    ((20_000, 20_000), LIMITS.max_pixels),  # over Pillow's own error limit
    ((12_000, 8_000), 10**9),  # Pillow would only warn: our limit is higher, the warning still refuses
    ((8_000, 6_000), LIMITS.max_pixels),  # Pillow says nothing: our header check refuses
])
def test_refuses_decompression_bomb(size, max_pixels):
    """A tiny PNG that would decode to too many pixels is refused, and no bomb warning escapes instead."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        message = refusal(pf.png_bomb(*size), limits=replace(LIMITS, max_pixels=max_pixels))
    assert "megapixels" in message
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]


def test_bomb_is_refused_before_decoding(monkeypatch):
    """The pixel limit is checked from the header: the image data is never decoded."""
    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self.size) or real_load(self))
    refusal(pf.png_bomb(8_000, 6_000))
    assert loads == []


def test_refuses_file_over_size_limit_before_decoding():
    """A file over max_file_mb is refused with its size, even if it is a fine photo."""
    data = pf.jpeg() + bytes(2 * (1 << 20))
    assert "limit is 1 MB" in refusal(data, limits=replace(LIMITS, max_file_mb=1))


def test_size_can_be_checked_before_download():
    """check_file_size refuses by the announced size alone."""
    with pytest.raises(PhotoRejected, match="21.0 MB"):
        check_file_size(21 * (1 << 20), filename="big.jpg", limits=LIMITS)


@pytest.mark.parametrize("size", [(100, 100), (255, 1000), (1000, 255)])
def test_refuses_short_side_under_min_side(size):
    """A photo whose short side is under min_side is refused, naming its size."""
    small = pf.real_photo().resize(size)
    assert f"{size[0]}x{size[1]}" in refusal(pf.jpeg(small))


def test_accepts_short_side_of_exactly_min_side():
    """The minimum itself is allowed."""
    assert inspect(pf.jpeg(pf.resized(pf.real_photo(), 256))).height == 256


def test_hostile_bytes_give_only_refusals():
    """Flipped bytes and cuts of every accepted format end as a photo or a PhotoRejected, never another error."""
    sources = [pf.encode(pf.resized(pf.real_photo(), 256), fmt) for fmt in ("JPEG", "PNG", "WEBP", "HEIF")]
    for data in sources:
        for at in range(3, len(data), max(1, len(data) // 12)):
            for variant in (data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:], data[:at]):
                try:
                    inspect(variant)
                except PhotoRejected:
                    pass


def test_declared_name_is_shown_safely():
    """A hostile file name appears only as its last part, without control characters."""
    message = refusal(b"", "../../etc/passwd\n\x1b[31m.jpg")
    assert message.startswith("passwd[31m.jpg: ") and "\n" not in message and "/" not in message


# --- cleaning ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["CMYK", "P+transparency", "I;16", "RGBA", "LA", "L", "1"])
def test_every_mode_becomes_8_bit_rgb(mode):
    """CMYK, palette, 16-bit, grey, 1-bit and transparent photos become plain 8-bit RGB (JPEG, or lossless
    WebP for the few-colour ones)."""
    kept = inspect(pf.odd_mode(mode))
    cleaned = pf.decode(kept.data)
    assert cleaned.mode == "RGB"
    assert (cleaned.format, kept.suffix) in (("JPEG", ".jpg"), ("WEBP", ".webp"))


def test_cmyk_keeps_its_colours():
    """A CMYK JPEG of a photo comes out close to the RGB photo."""
    cleaned = pf.decode(inspect(pf.odd_mode("CMYK")).data)
    assert pf.mean_difference(cleaned, pf.real_photo()) < 8


def test_16_bit_grey_is_scaled_not_clipped():
    """16-bit grey levels map onto 0..255 (Pillow's convert would clip nearly all to white)."""
    cleaned = pf.decode(inspect(pf.odd_mode("I;16")).data)
    assert pf.mean_difference(cleaned, pf.real_photo().convert("L")) < 2


@pytest.mark.parametrize("mode", ["RGBA", "P+transparency"])
def test_transparency_is_composited_onto_white(mode):
    """Transparent pixels come out white, not black."""
    photo = pf.real_photo().convert("RGBA")
    photo.putalpha(0)
    data = pf.png(photo) if mode == "RGBA" else pf.png(Image.new("P", (400, 300), 0), transparency=0)
    assert pf.decode(inspect(data).data).getextrema() == ((255, 255),) * 3


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animated_file_uses_first_frame(fmt):
    """An animated PNG or WebP is cut to its first frame, with a warning saying so."""
    data, first = pf.animated(fmt)
    photo = inspect(data)
    assert pf.mean_difference(pf.decode(photo.data), first) < 4  # re-encoded; the other frames: 80+
    assert any("first one" in f for f in photo.findings)


def test_exif_orientation_is_applied():
    """Orientation 6 turns the stored pixels upright: dimensions swap and the pixels match the upright photo."""
    data, upright = pf.oriented_jpeg(6)
    photo = inspect(data)
    assert (photo.width, photo.height) == upright.size
    assert pf.mean_difference(pf.decode(photo.data), upright) < 4


def assert_plain_jpeg(data: bytes) -> None:
    """`data` is a JPEG holding pixels only: no EXIF, XMP, ICC, comment or other application segment."""
    assert set(pf.jpeg_markers(data)) <= pf.JPEG_PLAIN_MARKERS
    cleaned = pf.decode(data)
    assert cleaned.format == "JPEG"
    assert set(cleaned.info) <= {"jfif", "jfif_version", "jfif_unit", "jfif_density"}
    assert not cleaned.getexif()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_all_metadata_is_removed(fmt):
    """EXIF with GPS, XMP, ICC, text chunks and comments are gone: the JPEG holds pixels only."""
    data = pf.with_metadata(fmt)
    assert pf.SECRET_XMP[:20] in data or fmt == "HEIF"  # the input really carries it
    out = inspect(data).data
    assert_plain_jpeg(out)
    assert not any(marker in out for marker in (b"dreambot-secret", b"xmpmeta", b"Exif\x00", b"Sample Phone"))


def test_unusable_icc_profile_is_ignored():
    """A garbage ICC profile does not refuse the photo; it is simply dropped."""
    assert_plain_jpeg(inspect(pf.jpeg(icc_profile=b"not a colour profile" * 10)).data)


def test_store_photo_is_content_addressed(tmp_path):
    """The cleaned JPEG is stored under its hash, never its name, and storing it twice is a no-op."""
    photo = inspect(pf.jpeg(), "my-secret-name.jpg")
    digest, rel = store_photo(tmp_path, photo)
    assert rel == f"blobs/{digest[:2]}/{digest}.jpg"
    assert (tmp_path / rel).read_bytes() == photo.data
    assert store_photo(tmp_path, photo) == (digest, rel)


def test_size_bytes_is_the_stored_size(tmp_path):
    """size_bytes, what a storage quota counts, is the size of the file store_photo writes."""
    photo = inspect(pf.jpeg())
    _, rel = store_photo(tmp_path, photo)
    assert photo.size_bytes == (tmp_path / rel).stat().st_size > 0


# --- downscaling -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_large_photo_is_kept_downscaled_to_max_side(fmt):
    """A photo longer than max_side is kept with its longest side at max_side, as a plain JPEG."""
    photo = inspect(pf.with_metadata(fmt), limits=replace(LIMITS, max_side=320))
    assert (photo.width, photo.height, photo.original_size) == (320, 214, (640, 427))
    assert pf.decode(photo.data).size == (320, 214)
    assert_plain_jpeg(photo.data)
    assert pf.mean_difference(pf.decode(photo.data), pf.real_photo().resize((320, 214))) < 4


def test_large_jpeg_is_decoded_at_reduced_scale(monkeypatch):
    """A JPEG at least twice max_side is decoded by libjpeg at 1/2 scale, then resized to max_side exactly."""
    loaded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loaded.append(self.size) or real_load(self))
    photo = inspect(pf.jpeg(), limits=replace(LIMITS, max_side=300))
    assert loaded[0] == (320, 214) and (photo.width, photo.height) == (300, 200)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_survives_reduced_scale_decoding(orientation):
    """A turned or mirrored JPEG decoded at reduced scale comes out upright and exactly max_side long."""
    data, upright = pf.oriented_jpeg(orientation)
    photo = inspect(data, limits=replace(LIMITS, max_side=300))
    assert (photo.width, photo.height, photo.original_size) == (300, 200, (640, 427))
    assert pf.mean_difference(pf.decode(photo.data), upright.resize((300, 200))) < 8  # wrong ways: 75+


@pytest.mark.parametrize("max_side", [640, 2048])
def test_small_photo_is_not_enlarged(max_side):
    """A photo whose longest side is within max_side keeps its size."""
    photo = inspect(pf.jpeg(), limits=replace(LIMITS, max_side=max_side))
    assert (photo.width, photo.height) == (640, 427)


def test_min_side_is_judged_on_the_original_size():
    """A photo accepted at its own size is accepted even when its kept copy is shorter than min_side."""
    photo = inspect(pf.jpeg(), limits=replace(LIMITS, max_side=300, min_side=400))
    assert min(photo.width, photo.height) == 200


def test_min_side_refusal_names_the_original_size():
    """A photo under min_side is refused with its own size, whatever max_side is."""
    assert "640x427 pixels" in refusal(pf.jpeg(), limits=replace(LIMITS, max_side=300, min_side=500))


def test_low_resolution_warning_is_judged_on_the_original_size():
    """A 512 px photo kept at 256 px is not warned about; the warning names the upload's own size."""
    limits = replace(LIMITS, max_side=256)
    assert not inspect(pf.jpeg(pf.real_photo("astronaut")), limits=limits).findings
    assert "low resolution (640x427)" in inspect(pf.jpeg(), limits=limits).findings[0]


def test_cut_jpeg_is_refused_when_decoded_at_reduced_scale():
    """Truncation is still caught when libjpeg decodes at 1/2 scale."""
    refusal(pf.jpeg()[:-200], limits=replace(LIMITS, max_side=300))


# --- warnings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("short_side, warned", [(300, True), (511, True), (512, False)])
def test_low_resolution_warning(short_side, warned):
    """A short side under warn_side gets the low-resolution warning."""
    photo = inspect(pf.jpeg(pf.resized(pf.real_photo("astronaut"), short_side), quality=95))
    assert any("low resolution" in f for f in photo.findings) == warned


@pytest.mark.parametrize("name", ["china", "flower", "coffee", "astronaut", "rocket", "chelsea"])
@pytest.mark.parametrize("sigma, warned", [(0, False), (2, True)])
def test_blur_warning(name, sigma, warned):
    """A real photo passes the blur check; the same photo under a Gaussian blur is warned about."""
    image = pf.real_photo(name)
    photo = inspect(pf.jpeg(pf.blurred(image, sigma) if sigma else image, quality=95))
    assert any("blurry" in f for f in photo.findings) == warned


def test_near_duplicate_found_for_resized_recompressed_copy():
    """A photo and its smaller, re-compressed copy are a near-duplicate pair."""
    original = pf.real_photo("coffee")
    copy = pf.jpeg(original.resize((500, 333)), quality=70)
    pairs = find_duplicates([inspect(pf.jpeg(original)), inspect(copy)], LIMITS)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]


@pytest.mark.parametrize("a, b", [("china", "flower"), ("coffee", "rocket"), ("astronaut", "chelsea")])
def test_different_photos_are_not_duplicates(a, b):
    """Two different photographs are not flagged."""
    assert find_duplicates([inspect(pf.jpeg(pf.real_photo(a))), inspect(pf.jpeg(pf.real_photo(b)))], LIMITS) == []


def test_duplicate_warning_names_the_earlier_photo():
    """Only the later photo of a pair is told which earlier photo it repeats."""
    first, other = inspect(pf.jpeg(pf.real_photo("coffee"))), inspect(pf.jpeg(pf.real_photo("china")))
    marked = mark_duplicates([first, other, first], [(0, 2, 0)])
    assert (marked[0], marked[1]) == (first, other)
    assert marked[2].findings[-1].startswith("it looks like a near-duplicate of photo 1")


@pytest.mark.parametrize("count, needle", [(1, "at least 3"), (2, "Add 1 more"), (11, "Leave out 1")])
def test_photo_count_outside_limits_is_refused(count, needle):
    """Too few or too many photos for one subject is refused with what to do."""
    with pytest.raises(PhotoRejected, match=needle):
        check_count(count, LIMITS)


def test_check_set_accepts_a_good_set_and_returns_duplicates():
    """check_set passes a set of allowed size and returns its duplicate pairs."""
    shots = [inspect(pf.jpeg(pf.real_photo(n))) for n in ("china", "flower", "coffee")]
    assert check_set([*shots, shots[0]], LIMITS) == [(0, 3, 0)]


# --- sample photos and the command line --------------------------------------------------------

def test_sample_photos_are_accepted_and_cleaned(tmp_path):
    """Every sample photo is accepted; the one with GPS and orientation 6 comes out upright without them."""
    paths = write_sample_photos(tmp_path)
    assert [p.stem for p in paths] == list(SAMPLES)
    raw = Image.open(tmp_path / "coffee.jpg")
    assert raw.getexif().get_ifd(ExifTags.IFD.GPSInfo) and raw.size == (400, 600)
    cleaned = {p.stem: inspect(p.read_bytes(), p.name) for p in paths}
    assert (cleaned["coffee"].width, cleaned["coffee"].height) == (600, 400)
    assert not pf.decode(cleaned["coffee"].data).getexif()


def run_cli(argv: list[str], cfg) -> int:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args, cfg)


def test_check_photos_passes_good_files(tmp_path, cfg, capsys):
    """check-photos prints one OK line per accepted file and exits 0."""
    paths = write_sample_photos(tmp_path)
    assert run_cli(["check-photos", *map(str, paths)], cfg) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["OK", p.name] for p in paths]


def test_check_photos_refuses_hostile_files_without_traceback(tmp_path, cfg, capsys):
    """Missing, folder, device, empty, random and cut files each get a REFUSED line; exit status 1."""
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "random.jpg").write_bytes(pf.impostor("random"))
    (tmp_path / "cut.jpg").write_bytes(pf.jpeg()[:2000])
    (tmp_path / "good.jpg").write_bytes(pf.jpeg())
    names = ["missing.jpg", "empty.jpg", "random.jpg", "cut.jpg", "good.jpg"]
    argv = ["check-photos", *(str(tmp_path / n) for n in names), str(tmp_path), os.devnull]
    assert run_cli(argv, cfg) == 1
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert [line.split()[0] for line in lines] == ["REFUSED"] * 4 + ["OK"] + ["REFUSED"] * 2
    assert out.err == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_check_photos_refuses_unreadable_file(tmp_path, cfg, capsys):
    """A file without read permission is refused with a reason."""
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(pf.jpeg())
    locked.chmod(0)
    assert run_cli(["check-photos", str(locked)], cfg) == 1
    assert "permission denied" in capsys.readouterr().out


def test_check_photos_flags_duplicates_across_files(tmp_path, cfg, capsys):
    """A copy given next to its original is warned about by name."""
    (tmp_path / "a.jpg").write_bytes(pf.jpeg())
    (tmp_path / "b.jpg").write_bytes(pf.jpeg(quality=60))
    assert run_cli(["check-photos", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")], cfg) == 0
    assert "near-duplicate of a.jpg" in capsys.readouterr().out.splitlines()[1]


def test_sample_photos_command_reports_unwritable_folder(tmp_path, cfg, capsys):
    """sample-photos into a path that is a file fails with a message and status 1, no traceback."""
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    assert run_cli(["sample-photos", str(blocker / "photos")], cfg) == 1
    assert "cannot write" in capsys.readouterr().err


def test_intake_leaves_truncated_loading_off():
    """Importing photo intake never turns on Pillow's global LOAD_TRUNCATED_IMAGES."""
    assert photos.ACCEPTED and ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_few_colour_images_are_kept_lossless_and_photos_as_jpeg():
    """A drawing of flat colours is kept as lossless WebP, pixel for pixel; a photograph as JPEG; neither
    carries metadata."""
    from PIL import Image

    flat = Image.new("RGB", (640, 640), (30, 120, 200))
    flat.paste((250, 220, 10), (200, 200, 440, 440))
    kept = inspect(pf.encode(flat, "PNG"))
    back = pf.decode(kept.data)
    assert (back.format, kept.suffix) == ("WEBP", ".webp")
    assert list(back.convert("RGB").getdata()) == list(flat.getdata())
    assert not {"exif", "icc_profile", "xmp"} & set(back.info)
    photo = inspect(pf.jpeg())
    assert (pf.decode(photo.data).format, photo.suffix) == ("JPEG", ".jpg")
