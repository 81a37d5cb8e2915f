"""`dreambot verify IMAGE [IMAGE ...]`: what an image file says about being AI-generated.

Per file: the IPTC digital source type in its XMP (storage/provenance.py), the base model, LoRA
hash(es) and seed dreambot recorded, and the invisible watermark (trainer/watermark.py), looked for
even where the metadata was stripped. Exit status: 0 when every file is marked AI-generated, 1 when
any is not, 2 when any cannot be read. It lives in trainer/ because the watermark reader imports
torch (through `imwatermark`), which the bot never loads; that import happens inside the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

MARKED, UNMARKED, UNREADABLE = 0, 1, 2


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("verify", help="report an image's AI-generation marks: metadata and watermark")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--no-watermark", action="store_true",
                   help="read the metadata only (the watermark check loads torch and takes a few seconds)")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace, cfg) -> int:
    codes = []
    for path in args.images:
        text, code = verify_file(path, watermark=not args.no_watermark)
        print(text)
        codes.append(code)
    return max(codes)


def verify_file(path: Path, *, watermark: bool = True) -> tuple[str, int]:
    """The report on one file, and its exit status (MARKED, UNMARKED or UNREADABLE)."""
    from storage import provenance

    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"{path}: cannot read it: {exc.strerror or exc}.", UNREADABLE
    try:
        report = provenance.read(data)
    except ValueError as exc:
        return f"{path}: cannot read it: {exc}.", UNREADABLE
    wm_line, wm_found = _watermark(data, report) if watermark else ("not checked (--no-watermark)", False)

    if report.ai_generated:
        kind = report.digital_source_type.rsplit("/", 1)[-1]
        head = f"{path}: AI-generated (IPTC digital source type {kind}, in its XMP metadata)"
    elif wm_found:
        head = f"{path}: AI-generated (the invisible watermark is there; the metadata marks are not)"
    else:
        head = f"{path}: no AI-generation mark found (no IPTC digital source type in its metadata, no watermark)"
    lines = [head, f"  file:        {report.format}, {report.size[0]}x{report.size[1]}"]
    for label, value in (("made with", report.software), ("base model", report.base_model),
                         ("LoRA sha256", ", ".join(report.lora_sha256)), ("seed", report.seed)):
        if value not in (None, ""):
            lines.append(f"  {label + ':':<12} {value}")
    lines.append(f"  watermark:   {wm_line}")
    return "\n".join(lines), MARKED if report.ai_generated or wm_found else UNMARKED


def _watermark(data: bytes, report) -> tuple[str, bool]:
    """A line on the watermark, and whether it was found."""
    import io

    from PIL import Image

    from trainer import watermark

    try:
        watermark.load()
    except ImportError as exc:
        return f"not checked: {exc}", False
    with Image.open(io.BytesIO(data)) as image:
        found = watermark.detect(image)
    total = len(watermark.BITS)
    if found is None:
        w, h = report.size
        return (f"none: a {w}x{h} image is too small to carry a watermark "
                f"(it needs {total} blocks of 8x8 pixels)"), False
    if found.found:
        return f"found ({found.matching} of {total} bits agree)", True
    if report.watermark:
        return (f"not found ({found.matching} of {total} bits agree), though the metadata says one was embedded: "
                "the image was probably resized, cropped or edited"), False
    return f"none ({found.matching} of {total} bits agree, as chance gives)", False
