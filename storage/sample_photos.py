"""Real photographs shipped with scikit-image, written as JPEGs for the demo and the tests.

`coffee.jpg` carries the metadata a phone would add: camera make and model, a GPS position and
orientation 6 (its pixels are stored turned a quarter left, to be shown turned right), so a check
shows that intake turns it upright and strips the rest.
"""

from __future__ import annotations

from pathlib import Path

from PIL import ExifTags, Image

# scikit-image loaders of real photographs with a short side of at least 256 pixels
SAMPLES = ("chelsea", "coffee", "astronaut", "rocket", "camera")
EXIF_ORIENTATION = 0x0112
GPS_POSITION = {  # the Eiffel Tower
    ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (48.0, 51.0, 29.0),
    ExifTags.GPS.GPSLongitudeRef: "E", ExifTags.GPS.GPSLongitude: (2.0, 17.0, 40.0),
}


def sample_image(name: str) -> Image.Image:
    """One of SAMPLES as a Pillow image, upright and without metadata."""
    import skimage.data  # imported here: it is slow to import and only the demo needs it

    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}: choose one of {', '.join(SAMPLES)}")
    return Image.fromarray(getattr(skimage.data, name)())


def write_pngs(folder: Path, names: tuple[str, ...] = ("chelsea", "astronaut", "coffee")) -> list[Path]:
    """Write the named samples as <name>.png into `folder` (created if needed), plain: no metadata, upright."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png" for name in names]
    for name, path in zip(names, paths, strict=True):
        sample_image(name).save(path)
    return paths


def phone_exif() -> Image.Exif:
    """EXIF as a phone writes it: make, model, a GPS position and orientation 6 (turn right to show)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Dreambot"
    exif[ExifTags.Base.Model] = "Sample Phone"
    exif[EXIF_ORIENTATION] = 6
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(GPS_POSITION)
    return exif


def write_sample_photos(folder: Path) -> list[Path]:
    """Write every sample as <name>.jpg into `folder` (created if needed); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SAMPLES:
        image, extra = sample_image(name), {}
        if name == "coffee":
            image = image.transpose(Image.Transpose.ROTATE_90)  # undone by orientation 6
            extra = {"exif": phone_exif()}
        path = folder / f"{name}.jpg"
        image.save(path, format="JPEG", quality=92, **extra)
        paths.append(path)
    return paths
