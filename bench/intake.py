"""Photo intake benchmark: wall time and peak memory to take in a 40-megapixel phone JPEG.

    python -m bench.intake [--runs 5] [--out bench/out/intake.json]

The photo is scikit-image's `chelsea` cropped to 4:3 and upscaled to 7296 x 5472 (a 40 MP phone
sensor), with Gaussian luminance grain (sigma 1.5) so that it compresses like a photo: about 4 MB
at quality 90. Like a phone's, it carries EXIF (orientation 6, GPS) and an sRGB ICC profile.

Each run is a fresh Python process that imports photo intake, reads the file, then times one
`inspect_photo` call with the default limits (max_side 2048). Its memory is the process's peak RSS
during the call minus its RSS just before it: what the call adds, Pillow's and numpy's buffers
included (tracemalloc would miss those). The peak is Linux's VmHWM, reset to the current RSS just
before the call (/proc/self/clear_refs); getrusage's ru_maxrss cannot be used in a child process,
as it starts at the parent's peak, which fork and exec carry over. "full decode" is the
same intake with libjpeg's reduced-scale decoding turned off (JpegImageFile.draft a no-op), to show
what it saves. The two alternate, swapping which goes first each run; ratios are per pair of runs.
Prints a table and writes JSON (default bench/out/intake.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE = (7296, 5472)
SOURCE_QUALITY = 90
GRAIN_SIGMA = 1.5  # luminance grain; 1.5 makes the upscaled cat compress like a 40 MP photo (~4 MB)
TARGET_SECONDS, TARGET_MB = 3.0, 300.0
VARIANTS = {"reduced": "reduced-scale decode", "full": "full decode"}
ROOT = Path(__file__).resolve().parent.parent


def make_photo(path: Path) -> dict:
    """Write the 40 MP test JPEG to `path`; returns what it is."""
    import numpy as np
    import skimage.data
    from PIL import Image, ImageCms

    from storage.sample_photos import phone_exif

    cat = Image.fromarray(skimage.data.chelsea())
    crop = round(cat.height * SIZE[0] / SIZE[1])
    left = (cat.width - crop) // 2
    pixels = np.array(cat.crop((left, 0, left + crop, cat.height)).resize(SIZE, Image.Resampling.BICUBIC))
    rng = np.random.default_rng(0)
    for top in range(0, SIZE[1], 256):  # in bands: float noise for the whole frame would take 1 GB
        band = pixels[top:top + 256]
        grain = rng.normal(0, GRAIN_SIGMA, band.shape[:2]).astype(np.float32)[..., None]
        band[...] = np.clip(band + grain, 0, 255).astype(np.uint8)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pixels).save(path, format="JPEG", quality=SOURCE_QUALITY, exif=phone_exif(),
                                 icc_profile=icc)
    return {"width": SIZE[0], "height": SIZE[1], "megapixels": SIZE[0] * SIZE[1] / 1e6,
            "file_mb": path.stat().st_size / 2**20, "quality": SOURCE_QUALITY, "exif_orientation": 6,
            "icc": "sRGB", "grain_sigma": GRAIN_SIGMA}


def _status_mb(key: str) -> float:
    """A memory line of /proc/self/status (VmRSS: resident now, VmHWM: peak resident) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {key} in /proc/self/status: this benchmark needs Linux")


def child(variant: str, path: str) -> None:
    """One measured inspect_photo call in this fresh process; prints its figures as JSON."""
    from PIL import JpegImagePlugin

    from storage.config import PhotoLimits
    from storage.photos import inspect_photo

    if variant == "full":
        JpegImagePlugin.JpegImageFile.draft = lambda self, mode, size: None
    data = Path(path).read_bytes()
    limits = PhotoLimits()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux 4.0+)
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    photo = inspect_photo(data, filename="photo.jpg", content_type=None, limits=limits)
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    print(json.dumps({"variant": variant, "seconds": seconds, "peak_mb": peak - before,
                      "rss_before_mb": before, "kept": [photo.width, photo.height],
                      "kept_kb": photo.size_bytes / 1024, "findings": list(photo.findings)}))


def run_once(variant: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.intake", "--child", variant, str(path)], cwd=ROOT,
                         check=True, stdout=subprocess.PIPE, text=True)  # a failing child's stderr shows
    return json.loads(out.stdout.splitlines()[-1])


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def fmt(s: dict, digits: int) -> str:
    return f"{s['min']:.{digits}f} / {s['median']:.{digits}f} / {s['max']:.{digits}f}"


def main() -> int:
    from storage.config import PhotoLimits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each variant (default 5)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/intake.json"))
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "phone-40mp.jpg"
        photo = make_photo(path)
        for i in range(args.runs):
            for variant in (VARIANTS if i % 2 == 0 else reversed(VARIANTS)):
                runs[variant].append(run_once(variant, path))
                print(f"run {i + 1} {variant:>7}: {runs[variant][-1]['seconds']:.2f} s, "
                      f"{runs[variant][-1]['peak_mb']:.0f} MB", flush=True)
    summary = {v: {k: spread([r[k] for r in rs]) for k in ("seconds", "peak_mb")} for v, rs in runs.items()}
    pairs = list(zip(runs["reduced"], runs["full"], strict=True))
    ratios = {"seconds": spread([f["seconds"] / r["seconds"] for r, f in pairs]),
              "peak_mb": spread([f["peak_mb"] / r["peak_mb"] for r, f in pairs])}
    worst = summary["reduced"]
    met = worst["seconds"]["max"] < TARGET_SECONDS and worst["peak_mb"]["max"] < TARGET_MB

    kept = runs["reduced"][0]
    print(f"\nphoto: {photo['width']}x{photo['height']} JPEG ({photo['megapixels']:.1f} MP), "
          f"{photo['file_mb']:.1f} MB at quality {photo['quality']}, EXIF orientation 6 + GPS, sRGB ICC")
    print(f"kept:  {kept['kept'][0]}x{kept['kept'][1]} JPEG, {kept['kept_kb']:.0f} KB "
          f"(default limits: max_side {PhotoLimits().max_side})")
    print("memory: peak RSS of a fresh process during inspect_photo (VmHWM, reset just before) minus its RSS "
          "before the call")
    table = [("variant", "runs", "wall s (min / median / max)", "peak MB (min / median / max)")]
    table += [(label, len(runs[v]), fmt(summary[v]["seconds"], 2), fmt(summary[v]["peak_mb"], 0))
              for v, label in VARIANTS.items()]
    table.append(("full / reduced (ratio)", len(pairs), fmt(ratios["seconds"], 1), fmt(ratios["peak_mb"], 1)))
    print()
    for name, n, seconds, mb in table:
        print(f"{name:<22} {n:>4} {seconds:>28} {mb:>30}")
    print(f"\ntarget: under {TARGET_SECONDS:.0f} s and {TARGET_MB:.0f} MB in every reduced-scale run: "
          f"{'met' if met else 'NOT met'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "intake", "photo": photo,
        "memory": "peak RSS during the call (VmHWM, reset via /proc/self/clear_refs) minus RSS just "
                  "before it, one fresh process per run",
        "runs": runs, "summary": summary, "ratio_full_over_reduced": ratios,
        "target": {"seconds": TARGET_SECONDS, "peak_mb": TARGET_MB, "met": met}}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
