"""Builders for the photo tests: real photographs in many encodings, and a hostile set of files."""

from __future__ import annotations

import io
import zlib
from functools import cache

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageFilter, PngImagePlugin

from storage.sample_photos import phone_exif, sample_image

pillow_heif.register_heif_opener()

SECRET_COMMENT = b"dreambot-secret-comment"
SECRET_XMP = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>dreambot-secret-xmp</x:xmpmeta>"


@cache
def _real(name: str) -> Image.Image:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image
        return Image.fromarray(load_sample_image(f"{name}.jpg"))
    return sample_image(name).convert("RGB")


def real_photo(name: str = "china") -> Image.Image:
    """A real photograph: china, flower (scikit-learn) or a storage.sample_photos name (scikit-image)."""
    return _real(name).copy()


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def jpeg(image: Image.Image | None = None, **params) -> bytes:
    return encode(image or real_photo(), "JPEG", quality=params.pop("quality", 90), **params)


def png(image: Image.Image | None = None, **params) -> bytes:
    return encode(image or real_photo(), "PNG", **params)


def resized(image: Image.Image, short_side: int) -> Image.Image:
    scale = short_side / min(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def blurred(image: Image.Image, sigma: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(sigma))


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel value, 0 to 255."""
    return float(np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16)).mean())


# JPEG markers that carry only what decoding needs: the JFIF header, tables, frame, scan, restarts
JPEG_PLAIN_MARKERS = {0xD8, 0xE0, 0xDB, 0xC4, 0xC0, 0xC1, 0xC2, 0xDA, 0xDD, 0xD9}
_IN_SCAN = (0x00, *range(0xD0, 0xD8))  # after 0xFF inside scan data: a stuffed byte or a restart marker


def jpeg_markers(data: bytes) -> list[int]:
    """The marker codes of a JPEG file in order (0xD8 SOI ... 0xD9 EOI), skipping entropy-coded data."""
    pos, kinds = 2, [0xD8]
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        kind, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        kinds.append(kind)
        pos += 2 + length
        if kind == 0xDA:  # scan data runs to the next marker that is not a stuffed 0xFF00 or a restart
            while pos + 1 < len(data) and not (data[pos] == 0xFF and data[pos + 1] not in _IN_SCAN):
                pos += 1
            if data[pos:pos + 2] == b"\xff\xd9":
                kinds.append(0xD9)
                break
    return kinds


def _chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def png_bomb(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit PNG of width x height: a few kilobytes that decode to width*height pixels."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then packed pixels
    packer, body, batch = zlib.compressobj(9), [], 1000
    for start in range(0, height, batch):
        body.append(packer.compress(row * min(batch, height - start)))
    body.append(packer.flush())
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(body))
            + _chunk(b"IEND", b""))


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def with_metadata(fmt: str) -> bytes:
    """A real photo carrying EXIF with GPS, XMP, an ICC profile and, where the format has them, comments."""
    image, exif = real_photo(), phone_exif()
    exif[0x0112] = 1  # keep the pixels as they are
    common = {"exif": exif, "icc_profile": srgb_icc()}
    if fmt == "JPEG":
        return encode(image, "JPEG", xmp=SECRET_XMP, comment=SECRET_COMMENT, **common)
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", SECRET_COMMENT.decode())
        info.add_text("Description", SECRET_COMMENT.decode(), zip=True)
        info.add_itxt("XML:com.adobe.xmp", SECRET_XMP.decode())
        return encode(image, "PNG", pnginfo=info, **common)
    return encode(image, fmt, xmp=SECRET_XMP, **common)


# how the pixels of each EXIF orientation are stored: the inverse of what shows them upright
_STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def oriented_jpeg(orientation: int = 6, image: Image.Image | None = None) -> tuple[bytes, Image.Image]:
    """A JPEG stored as a camera with EXIF `orientation` would (6: a quarter left), and the upright photo."""
    upright = image or real_photo()
    stored = upright.transpose(_STORED_AS[orientation]) if orientation in _STORED_AS else upright
    exif = phone_exif()
    exif[0x0112] = orientation
    return jpeg(stored, exif=exif), upright


def animated(fmt: str) -> tuple[bytes, Image.Image]:
    """A three-frame animated PNG or WebP of real photos, and its first frame."""
    frames = [real_photo("china"), real_photo("flower"), real_photo("china").transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **extra), frames[0]


def odd_mode(mode: str) -> bytes:
    """A real photo saved in a mode the trainer cannot take as it is."""
    photo = real_photo()
    if mode == "CMYK":
        return jpeg(photo.convert("CMYK"))
    if mode == "P+transparency":
        pal = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        return png(pal, transparency=0)
    if mode == "I;16":
        grey = np.asarray(photo.convert("L"), np.uint16) * 257
        return png(Image.fromarray(grey))
    if mode in ("RGBA", "LA"):
        with_alpha = photo.convert(mode)
        with_alpha.putalpha(128)
        return png(with_alpha)
    if mode in ("L", "1"):
        return png(photo.convert(mode))
    raise ValueError(mode)


def impostor(kind: str) -> bytes:
    """Bytes of something that is not an accepted photo, to be sent under a photo's name."""
    small = resized(real_photo(), 300)
    if kind in ("GIF", "BMP", "TIFF", "AVIF", "PDF"):
        return encode(small, kind)
    return {
        "text": b"These are not the pixels you are looking for.\n" * 20,
        "html": b"<!doctype html><html><body><img src='x.jpg'></body></html>\n",
        "svg": b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg' width='900' height='900'/>",
        "exe": b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(512),
        "zip": b"PK\x03\x04\x14\x00\x00\x00" + bytes(200),
        "mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(200),
        "random": np.random.default_rng(7).bytes(4096),
    }[kind]
