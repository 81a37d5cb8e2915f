"""Provenance marks: written into PNG metadata, read back from PNG, JPEG and WebP, absent from real photos."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from storage import provenance
from storage.provenance import Marks
from storage.sample_photos import sample_image

LORA = "3f" * 32
MARKS = Marks(base_model="runwayml/stable-diffusion-v1-5", lora_sha256=(LORA, "a1" * 32), seed=1234)


def marked_png(marks: Marks = MARKS, *, side: int = 64) -> bytes:
    buf = io.BytesIO()
    sample_image("chelsea").convert("RGB").resize((side, side)).save(buf, format="PNG",
                                                                    pnginfo=provenance.png_info(marks))
    return buf.getvalue()


def reencoded(data: bytes, fmt: str) -> bytes:
    with Image.open(io.BytesIO(data)) as source:
        buf = io.BytesIO()
        source.convert("RGB").save(buf, format=fmt, quality=90, **provenance.save_options(source, fmt))
    return buf.getvalue()


def test_png_marks_are_read_back():
    """A marked PNG says it is trainedAlgorithmicMedia and gives the base model, LoRA hashes and seed."""
    report = provenance.read(marked_png())
    assert report.ai_generated and report.digital_source_type == provenance.TRAINED_ALGORITHMIC_MEDIA
    assert (report.base_model, report.lora_sha256, report.seed) == (MARKS.base_model, MARKS.lora_sha256, 1234)
    assert report.software == "dreambot" and report.format == "PNG"


def test_png_carries_xmp_and_plain_text_chunks():
    """The XMP packet sits in iTXt "XML:com.adobe.xmp"; base model, LoRA hash and seed are plain chunks too."""
    with Image.open(io.BytesIO(marked_png())) as image:
        image.load()
        text = dict(image.text)
    assert "trainedAlgorithmicMedia" in text["XML:com.adobe.xmp"]
    assert text["dreambot:base_model"] == MARKS.base_model and text["dreambot:seed"] == "1234"
    assert text["dreambot:lora_sha256"] == ",".join(MARKS.lora_sha256)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
def test_a_reencoded_copy_keeps_the_marks(fmt):
    """A copy re-encoded with save_options is still recognised, with every fact."""
    report = provenance.read(reencoded(marked_png(), fmt))
    assert report.format == fmt and report.ai_generated
    assert (report.base_model, report.lora_sha256, report.seed) == (MARKS.base_model, MARKS.lora_sha256, 1234)


def test_a_grid_without_seed_or_lora_is_still_marked():
    """Marks with only the base model still state the digital source type; seed and hashes stay empty."""
    report = provenance.read(marked_png(Marks(base_model="stabilityai/stable-diffusion-xl-base-1.0")))
    assert report.ai_generated and report.seed is None and report.lora_sha256 == ()


def test_a_real_photo_has_no_marks():
    """A plain photograph is not reported as AI-generated and yields no facts."""
    buf = io.BytesIO()
    sample_image("coffee").save(buf, format="JPEG", quality=90)
    report = provenance.read(buf.getvalue())
    assert not report.ai_generated and report.base_model is None and report.seed is None


@pytest.mark.parametrize("data", [b"", b"not an image at all", marked_png()[:200]],
                         ids=["empty", "text", "truncated-png"])
def test_garbage_is_refused_with_a_reason(data):
    """Bytes that are no readable image raise ValueError saying so."""
    with pytest.raises(ValueError, match="not an image|damaged"):
        provenance.read(data)


@pytest.mark.parametrize("model, shown", [
    ("runwayml/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5"),
    ("/srv/models/sd15", "sd15"),
    ("./models/sd15.safetensors", "sd15.safetensors"),
    ("~/weights/tiny-sd", "tiny-sd"),
    ("C:\\Users\\op\\models\\sdxl", "sdxl"),
])
def test_a_local_model_path_is_recorded_by_its_last_part(model, shown):
    """The operator's folder layout never travels with an image; a hub id is kept whole."""
    report = provenance.read(marked_png(Marks(base_model=model)))
    assert report.base_model == shown
    assert "/srv" not in provenance.xmp_packet(Marks(base_model=model)).decode()


def test_xmp_written_by_another_tool_as_elements_is_read():
    """Properties written as child elements (as exiftool does) are found like attributes."""
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
           b'<Iptc4xmpExt:DigitalSourceType>http://cv.iptc.org/newscodes/digitalsourcetype/'
           b'compositeWithTrainedAlgorithmicMedia</Iptc4xmpExt:DigitalSourceType>'
           b'</rdf:Description></rdf:RDF></x:xmpmeta>')
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="JPEG", xmp=xmp)
    assert provenance.read(buf.getvalue()).ai_generated


def test_xmp_with_entity_declarations_is_ignored():
    """A packet declaring entities (never legitimate in XMP) is not parsed at all."""
    xmp = (b'<!DOCTYPE x [<!ENTITY t "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia">]>'
           b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
           b'Iptc4xmpExt:DigitalSourceType="&t;"/></rdf:RDF></x:xmpmeta>')
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="JPEG", xmp=xmp)
    assert provenance.read(buf.getvalue()).digital_source_type is None


def test_lora_hash_is_the_files_sha256(tmp_path):
    """sha256_file streams the file in chunks and gives its plain sha256 hex digest."""
    path = tmp_path / "pytorch_lora_weights.safetensors"
    data = bytes(range(256)) * 4099
    path.write_bytes(data)
    assert provenance.sha256_file(path, chunk_bytes=1000) == hashlib.sha256(data).hexdigest()


def test_lora_hash_follows_a_changed_file(tmp_path):
    """A rewritten file (new size or time) is hashed again, not answered from the cache."""
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"one")
    first = provenance.sha256_file(path)
    path.write_bytes(b"other")
    assert provenance.sha256_file(path) == hashlib.sha256(b"other").hexdigest() != first
