"""Provenance marks: every image dreambot writes says, in standard metadata, that it is AI-generated.

Written into a PNG as an XMP packet (the iTXt chunk "XML:com.adobe.xmp", as Adobe's XMP spec part 3
places it) stating the IPTC digital source type `trainedAlgorithmicMedia`, plus plain PNG text
chunks with the base model id, the LoRA file hash(es) and the seed. A JPEG or WebP copy carries
the same XMP packet (JPEG APP1, WebP "XMP " chunk): `save_options` gives the keywords that keep
the marks when an image is re-encoded, and `read` finds them in all three formats.

Never recorded: the prompt, the user, the subject's name, or a local folder path of the base model
(only its last part), since a shared image would carry them wherever it goes.
Pillow only; no torch, so the bot imports this too. The invisible watermark is trainer/watermark.py.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from PIL import Image, PngImagePlugin

IPTC_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED_ALGORITHMIC_MEDIA = IPTC_SOURCE_TYPES + "trainedAlgorithmicMedia"
# IPTC's digital source types that mean "made by a generative model" (not merely edited by software).
AI_SOURCE_TYPES = frozenset(IPTC_SOURCE_TYPES + name for name in (
    "trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia"))
SOFTWARE = "dreambot"
WATERMARK_NAME = "invisible-watermark dwtDctSvd, luma, 48 bits"  # what trainer/watermark.py embeds

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "dreambot": "https://dreambot.invalid/ns/provenance/1.0/",  # no standard property holds these
}
XMP_KEY = "XML:com.adobe.xmp"  # the PNG iTXt keyword of an XMP packet
# Plain PNG text chunks: "Software" and "Source" are registered PNG keywords, the rest are ours.
PNG_SOFTWARE, PNG_SOURCE, PNG_DESCRIPTION = "Software", "Source", "Description"
PNG_BASE_MODEL, PNG_LORA, PNG_SEED, PNG_WATERMARK = (
    "dreambot:base_model", "dreambot:lora_sha256", "dreambot:seed", "dreambot:watermark")
MAX_XMP_BYTES = 65_000  # one JPEG APP1 segment; ours is about 1.5 KB


@dataclass(frozen=True)
class Marks:
    """What an image records about how it was made."""

    base_model: str  # hub id or local path; a path is recorded by its last part only
    lora_sha256: tuple[str, ...] = ()  # sha256 of each LoRA weights file in use, hex
    seed: int | None = None  # remakes this one image; None for a grid of several
    watermark: bool = False  # also embed the invisible watermark (trainer/watermark.py, where it fits)


@dataclass(frozen=True)
class Report:
    """What `read` found in one image file."""

    format: str  # Pillow's name: PNG, JPEG, WEBP...
    size: tuple[int, int]
    digital_source_type: str | None = None  # from XMP (Iptc4xmpExt:DigitalSourceType)
    base_model: str | None = None
    lora_sha256: tuple[str, ...] = ()
    seed: int | None = None
    software: str | None = None
    watermark: str | None = None  # the watermark the writer says it embedded (None: none recorded)

    @property
    def ai_generated(self) -> bool:
        """The standard metadata says a generative model made this image."""
        return self.digital_source_type in AI_SOURCE_TYPES


# --- writing -------------------------------------------------------------------------------------------

def public_model_name(base_model: str) -> str:
    """A hub id as it is; a local path (absolute, ./, ~, or Windows) by its last part alone."""
    text = base_model.strip()
    if "\\" in text or re.match(r"^([A-Za-z]:|[/.~])", text):
        path = PureWindowsPath(text) if "\\" in text or re.match(r"^[A-Za-z]:", text) else PurePosixPath(text)
        return path.name or text
    return text


def description(marks: Marks, *, watermarked: bool = False) -> str:
    """One sentence a person reading the metadata understands."""
    parts = [f"AI-generated image, made by {SOFTWARE} with {public_model_name(marks.base_model)}"]
    if marks.lora_sha256:
        parts.append(f"LoRA sha256 {', '.join(marks.lora_sha256)}")
    if marks.seed is not None:
        parts.append(f"seed {marks.seed}")
    if watermarked:
        parts.append(f"invisible watermark: {WATERMARK_NAME}")
    return "; ".join(parts) + "."


def xmp_packet(marks: Marks, *, watermarked: bool = False) -> bytes:
    """An XMP packet: IPTC digital source type, the model in IPTC's AI System Used, our facts beside."""
    model = public_model_name(marks.base_model)
    attrs = {
        "Iptc4xmpExt:DigitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "Iptc4xmpExt:AISystemUsed": model,  # IPTC Photo Metadata 2025.1
        "xmp:CreatorTool": SOFTWARE,
        "dreambot:BaseModel": model,
    }
    if marks.seed is not None:
        attrs["dreambot:Seed"] = str(marks.seed)
    if watermarked:
        attrs["dreambot:Watermark"] = WATERMARK_NAME
    lora = ""
    if marks.lora_sha256:
        items = "".join(f"<rdf:li>{escape(h)}</rdf:li>" for h in marks.lora_sha256)
        lora = f"\n   <dreambot:LoraSha256><rdf:Seq>{items}</rdf:Seq></dreambot:LoraSha256>"
    xmlns = " ".join(f"xmlns:{k}={quoteattr(v)}" for k, v in NS.items() if k not in ("x", "rdf"))
    props = "\n    ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items())
    text = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        f'<x:xmpmeta xmlns:x="{NS["x"]}">\n'
        f' <rdf:RDF xmlns:rdf="{NS["rdf"]}">\n'
        f'  <rdf:Description rdf:about="" {xmlns}\n    {props}>\n'
        f'   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">'
        f'{escape(description(marks, watermarked=watermarked))}</rdf:li></rdf:Alt></dc:description>{lora}\n'
        '  </rdf:Description>\n'
        ' </rdf:RDF>\n'
        '</x:xmpmeta>\n'
        '<?xpacket end="r"?>')
    return text.encode("utf-8")


def png_info(marks: Marks, *, watermarked: bool = False) -> PngImagePlugin.PngInfo:
    """PNG text chunks (base model, LoRA hashes, seed) and the XMP packet, for `image.save(pnginfo=...)`."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_SOFTWARE, SOFTWARE)
    info.add_text(PNG_SOURCE, public_model_name(marks.base_model))  # PNG: "device used to create the image"
    info.add_text(PNG_DESCRIPTION, description(marks, watermarked=watermarked))
    info.add_text(PNG_BASE_MODEL, public_model_name(marks.base_model))
    if marks.lora_sha256:
        info.add_text(PNG_LORA, ",".join(marks.lora_sha256))
    if marks.seed is not None:
        info.add_text(PNG_SEED, str(marks.seed))
    if watermarked:
        info.add_text(PNG_WATERMARK, WATERMARK_NAME)
    info.add_itxt(XMP_KEY, xmp_packet(marks, watermarked=watermarked).decode("utf-8"), zip=False)
    return info


def save_options(source: Image.Image, fmt: str) -> dict[str, Any]:
    """Keywords for `image.save(..., format=fmt, **options)` that carry `source`'s marks into a re-encoded copy.

    PNG keeps every text chunk (and so the XMP packet); JPEG and WebP keep the XMP packet, which holds
    all the facts. Empty when `source` has no XMP or text to carry.
    """
    xmp = _xmp_bytes(source)
    if fmt.upper() == "PNG":
        text = {k: v for k, v in getattr(source, "text", {}).items() if k != XMP_KEY}
        if not text and not xmp:
            return {}
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
        if xmp:
            info.add_itxt(XMP_KEY, xmp.decode("utf-8", "replace"), zip=False)
        return {"pnginfo": info}
    if fmt.upper() in ("JPEG", "WEBP") and xmp and len(xmp) <= MAX_XMP_BYTES:
        return {"xmp": xmp}
    return {}


# --- reading -------------------------------------------------------------------------------------------

def read(data: bytes | Path) -> Report:
    """The marks found in a PNG, JPEG or WebP (or any image Pillow reads); ValueError saying why if it is no image."""
    raw = Path(data).read_bytes() if isinstance(data, Path) else data
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()  # text chunks after the pixel data are read only now
            fmt, size = image.format or "?", image.size
            xmp = _xmp_bytes(image)
            text = dict(getattr(image, "text", {}) or {})
    except Image.UnidentifiedImageError:
        raise ValueError("it is not an image (or not in a format Pillow reads: PNG, JPEG, WebP...)") from None
    except Image.DecompressionBombError:
        raise ValueError("it has too many pixels to open safely") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"the image is damaged or cut short ({exc})") from None
    facts = _from_xmp(xmp) if xmp else {}
    seed = facts.get("seed") or text.get(PNG_SEED)
    lora = facts.get("lora") or tuple(h for h in str(text.get(PNG_LORA, "")).split(",") if h)
    return Report(
        format=fmt, size=size, digital_source_type=facts.get("source_type"),
        base_model=facts.get("base_model") or text.get(PNG_BASE_MODEL),
        lora_sha256=tuple(lora), seed=_int(seed),
        software=facts.get("software") or text.get(PNG_SOFTWARE),
        watermark=facts.get("watermark") or text.get(PNG_WATERMARK))


def _xmp_bytes(image: Image.Image) -> bytes | None:
    xmp = image.info.get("xmp") or image.info.get(XMP_KEY)
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return xmp or None


def _from_xmp(xmp: bytes) -> dict[str, Any]:
    """The facts in an XMP packet, whether a writer put properties as attributes or as elements."""
    if b"<!DOCTYPE" in xmp or b"<!ENTITY" in xmp:  # XMP never has them; refuse entity tricks outright
        return {}
    try:
        root = ET.fromstring(xmp.strip(b"\x00 \r\n\t"))
    except ET.ParseError:
        return {}
    found: dict[str, Any] = {}
    wanted = {"source_type": ("Iptc4xmpExt", "DigitalSourceType"), "base_model": ("dreambot", "BaseModel"),
              "seed": ("dreambot", "Seed"), "software": ("xmp", "CreatorTool"),
              "watermark": ("dreambot", "Watermark")}
    for desc in root.iter(f"{{{NS['rdf']}}}Description"):
        for name, (prefix, local) in wanted.items():
            qname = f"{{{NS[prefix]}}}{local}"
            value = desc.get(qname)
            if value is None and (el := desc.find(qname)) is not None:
                value = (el.text or "").strip() or el.get(f"{{{NS['rdf']}}}resource")
            if value and name not in found:
                found[name] = value.strip()
        lora = desc.find(f"{{{NS['dreambot']}}}LoraSha256")
        if lora is not None and "lora" not in found:
            found["lora"] = tuple((li.text or "").strip() for li in lora.iter(f"{{{NS['rdf']}}}li") if li.text)
    return found


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


# --- hashing -------------------------------------------------------------------------------------------

_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def sha256_file(path: str | Path, *, chunk_bytes: int = 1 << 20) -> str:
    """The file's sha256 in hex, read in chunks; remembered while its size and modification time stay."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    with _hash_lock:
        if len(_hash_cache) > 256:
            _hash_cache.clear()
        _hash_cache[key] = digest.hexdigest()
    return digest.hexdigest()
