"""Watermark benchmark: how many of the 48 message bits survive a JPEG re-encode, ours against SDXL's.

    python -m bench.watermark [--quality 90] [--out bench/out/watermark.json]

Each of scikit-image's colour photographs is resized (centre square) to each size, marked, saved as
JPEG at `--quality`, decoded again, and read back:
- "dreambot": trainer.watermark (the package's dwtDctSvd block step on the luma, scale 36);
- "sdxl dwtDct": what diffusers' StableDiffusionXLWatermarker does (imwatermark's encoder, method
  dwtDct, the same 48-bit message); the package refuses images under 256 x 256, shown as n/a.
It also reads the unmarked JPEG, to show what chance gives (24 of 48 on average), and reports the
PSNR of the marked image against the original. "found" is trainer.watermark's threshold (42 of 48).
Prints a table (min / median / max over the photos) and writes JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")  # storage.sample_photos: scikit-image's
SIZES = (512, 256, 64)


def photo(name: str, size: int) -> Image.Image:
    from storage.sample_photos import sample_image

    image = sample_image(name).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def ours(image: Image.Image, quality: int) -> dict:
    from trainer import watermark

    marked = watermark.embed(image)
    read = watermark.detect(jpeg(marked, quality))
    unmarked = watermark.detect(jpeg(image, quality))
    return {"bits": read.matching, "unmarked_bits": unmarked.matching, "psnr": psnr(image, marked)}


def sdxl(image: Image.Image, quality: int) -> dict | None:
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    from trainer.watermark import BITS

    if min(image.size) < 256:
        return None  # imwatermark refuses images under 256 x 256
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", list(BITS))
    bgr = np.asarray(image)[:, :, ::-1]
    marked = Image.fromarray(np.ascontiguousarray(encoder.encode(bgr, "dwtDct")[:, :, ::-1]))
    decoder = WatermarkDecoder("bits", len(BITS))

    def bits(im: Image.Image) -> int:
        read = decoder.decode(np.ascontiguousarray(np.asarray(im)[:, :, ::-1]), "dwtDct")
        return int(sum(int(r) == b for r, b in zip(read, BITS, strict=True)))

    return {"bits": bits(jpeg(marked, quality)), "unmarked_bits": bits(jpeg(image, quality)),
            "psnr": psnr(image, marked)}


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> int:
    from trainer.watermark import MATCH

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the re-encode (default 90)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/watermark.json"))
    args = parser.parse_args()
    methods = {"dreambot": ours, "sdxl dwtDct": sdxl}
    runs: dict[str, dict[int, list[dict]]] = {m: {s: [] for s in SIZES} for m in methods}
    for size in SIZES:
        for name in PHOTOS:
            image = photo(name, size)
            for method, fn in methods.items():
                result = fn(image, args.quality)
                if result is not None:
                    runs[method][size].append({"photo": name, **result})
    print(f"48-bit message after JPEG quality {args.quality}, {len(PHOTOS)} scikit-image photos "
          f"(min / median / max); found = {MATCH} of 48 or more\n")
    print(f"{'method':<12} {'size':>5} {'bits read':>16} {'found':>7} {'unmarked (chance)':>18} {'PSNR dB':>18}")
    summary: dict = {}
    for method in methods:
        for size in SIZES:
            rs = runs[method][size]
            if not rs:
                print(f"{method:<12} {size:>5} {'n/a (refused under 256 px)':>62}")
                continue
            s = {k: spread([r[k] for r in rs]) for k in ("bits", "unmarked_bits", "psnr")}
            s["found"] = sum(r["bits"] >= MATCH for r in rs)
            summary.setdefault(method, {})[size] = s
            fmt = lambda d, n=0: f"{d['min']:.{n}f} / {d['median']:.{n}f} / {d['max']:.{n}f}"  # noqa: E731
            print(f"{method:<12} {size:>5} {fmt(s['bits']):>16} {s['found']:>3}/{len(rs):<3} "
                  f"{fmt(s['unmarked_bits']):>18} {fmt(s['psnr'], 1):>18}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "watermark", "quality": args.quality, "photos": PHOTOS,
                                    "threshold": MATCH, "runs": runs, "summary": summary}, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
