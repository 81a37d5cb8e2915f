"""`dreambot verify`: what it reports, and its exit status, for marked, unmarked and unreadable files."""

from __future__ import annotations

import sys

import pytest

from cli.main import main
from storage.provenance import Marks
from storage.sample_photos import sample_image
from trainer.generate import save_png

MARKS = Marks(base_model="runwayml/stable-diffusion-v1-5", lora_sha256=("3f" * 32,), seed=1234, watermark=True)


@pytest.fixture
def verify(tmp_path, capsys):
    """Run `dreambot verify` with a default config; (exit status, printed text)."""
    config = tmp_path / "config.toml"
    config.write_text("")

    def run(*args):
        code = main(["--config", str(config), "verify", *map(str, args)])
        return code, capsys.readouterr().out
    return run


@pytest.fixture
def marked(tmp_path):
    return save_png(sample_image("astronaut").convert("RGB").resize((512, 512)), tmp_path / "marked.png",
                    marks=MARKS)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    sample_image("coffee").save(path, quality=90)
    return path


def test_a_marked_image_is_reported_with_its_facts(verify, marked):
    """Exit 0; the report names the digital source type, base model, LoRA hash, seed and the watermark."""
    code, out = verify(marked)
    assert code == 0
    assert "AI-generated (IPTC digital source type trainedAlgorithmicMedia" in out
    for fact in ("runwayml/stable-diffusion-v1-5", "3f" * 32, "seed:        1234", "watermark:   found (48 of 48"):
        assert fact in out


def test_a_real_photo_is_reported_unmarked(verify, photo):
    """Exit 1, saying no mark was found, with the watermark's chance-level bit count."""
    code, out = verify(photo)
    assert code == 1 and "no AI-generation mark found" in out and "as chance gives" in out


def test_garbage_is_reported_unreadable(verify, tmp_path):
    """Exit 2 for a file that is no image, and for one that does not exist; each gets one clear line."""
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG but not really")
    code, out = verify(garbage, tmp_path / "missing.png")
    assert code == 2
    assert "garbage.png: cannot read it: it is not an image" in out and "missing.png: cannot read it" in out


def test_the_worst_file_decides_the_exit_status(verify, marked, photo):
    """A marked file and an unmarked one together exit 1."""
    assert verify(marked, photo)[0] == 1


def test_a_watermark_alone_still_marks_an_image(verify, tmp_path):
    """Metadata stripped (a plain re-save), the watermark still shows the image is AI-generated."""
    from PIL import Image

    path = save_png(sample_image("chelsea").convert("RGB").resize((256, 256)), tmp_path / "m.png", marks=MARKS)
    Image.open(path).save(stripped := tmp_path / "stripped.jpg", quality=90)
    code, out = verify(stripped)
    assert code == 0 and "the invisible watermark is there; the metadata marks are not" in out


def test_a_small_image_says_it_is_too_small_for_a_watermark(verify, tmp_path):
    """A 40 px image is marked in metadata; verify says plainly it cannot carry a watermark."""
    path = save_png(sample_image("chelsea").convert("RGB").resize((40, 40)), tmp_path / "s.png", marks=MARKS)
    code, out = verify(path)
    assert code == 0 and "too small to carry a watermark" in out


def test_metadata_only_skips_the_watermark(verify, marked):
    """--no-watermark reads the metadata alone and says the watermark was not checked."""
    code, out = verify("--no-watermark", marked)
    assert code == 0 and "not checked (--no-watermark)" in out


def test_without_the_watermark_package_the_metadata_is_still_read(verify, marked, monkeypatch):
    """When invisible-watermark cannot be imported, verify reports the metadata and says what to install."""
    monkeypatch.setitem(sys.modules, "imwatermark.dwtDctSvd", None)  # importing it now raises ImportError
    code, out = verify(marked)
    assert code == 0 and "watermark:   not checked: the invisible-watermark package cannot be loaded" in out
