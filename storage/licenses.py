"""The base model's license: where images and LoRAs come from, and what their use is bound by.

`resolve(base_model, override)` answers in this order:
  1. the operator's `trainer.model_license` (a license id, optionally followed by its link);
  2. the model card: the YAML front matter of README.md in a local diffusers folder, or in the local
     Hugging Face cache's snapshot of a hub id (never downloaded; the revision is that snapshot's commit);
  3. a single-file checkpoint's safetensors header (`modelspec.license`);
  4. a small table of well-known models (SD 1.x: CreativeML OpenRAIL-M; SD 2.x and SDXL: OpenRAIL++-M);
  5. "unknown", with a message telling the operator to set `trainer.model_license`.
No torch here: the bot shows the answer at /train and /subjects, the trainer writes it into LoRA files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from dataclasses import asdict, dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
CARD_NAME = "README.md"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
MAX_HEADER_BYTES = 100 << 20  # a safetensors header is JSON; kohya's tag tables can make it a few MB

# license id (as model cards spell it) -> (human name, where its text and use restrictions are)
LICENSES: dict[str, tuple[str, str | None]] = {
    "creativeml-openrail-m": ("CreativeML OpenRAIL-M", "https://huggingface.co/spaces/CompVis/stable-diffusion-license"),
    "openrail++": ("CreativeML OpenRAIL++-M",
                   "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/LICENSE.md"),
    "openrail": ("OpenRAIL", "https://www.licenses.ai/"),
    "apache-2.0": ("Apache License 2.0", "https://www.apache.org/licenses/LICENSE-2.0"),
    "mit": ("MIT License", "https://opensource.org/license/mit"),
}
_SD1 = "creativeml-openrail-m"
_SD2 = "openrail++"
# Hub ids (lower case) of the base models people usually run, with the license their cards state.
KNOWN_MODELS: dict[str, str] = {
    "runwayml/stable-diffusion-v1-5": _SD1,
    "stable-diffusion-v1-5/stable-diffusion-v1-5": _SD1,
    "compvis/stable-diffusion-v1-1": _SD1,
    "compvis/stable-diffusion-v1-2": _SD1,
    "compvis/stable-diffusion-v1-3": _SD1,
    "compvis/stable-diffusion-v1-4": _SD1,
    "runwayml/stable-diffusion-inpainting": _SD1,
    "stabilityai/stable-diffusion-2": _SD2,
    "stabilityai/stable-diffusion-2-base": _SD2,
    "stabilityai/stable-diffusion-2-1": _SD2,
    "stabilityai/stable-diffusion-2-1-base": _SD2,
    "stabilityai/stable-diffusion-xl-base-1.0": _SD2,
    "stabilityai/stable-diffusion-xl-refiner-1.0": _SD2,
}
# Single-file checkpoints by the names their publishers gave them (a file name proves little, so last).
KNOWN_FILES: tuple[tuple[str, str], ...] = (
    ("v1-5-pruned", _SD1), ("sd-v1-", _SD1), ("v2-1_", _SD2), ("v2-", _SD2), ("768-v-ema", _SD2),
    ("512-base-ema", _SD2), ("sd_xl_base_1.0", _SD2), ("sd_xl_refiner_1.0", _SD2),
)


@dataclass(frozen=True)
class ModelLicense:
    model: str  # the base model as configured: hub id, folder or file
    revision: str | None  # the hub snapshot's commit hash, when read from the local cache
    license: str  # license id as model cards spell it ("creativeml-openrail-m"), or "unknown"
    name: str  # human name ("CreativeML OpenRAIL-M")
    url: str | None  # the license text and its use restrictions, when known
    source: str  # where the answer came from: "config", "model card", "file metadata", "known model", "unknown"

    @property
    def known(self) -> bool:
        return self.license != UNKNOWN

    @property
    def model_name(self) -> str:
        """The model as users may see it: a hub id, or only a local folder's or file's name (no paths)."""
        if not self.model.strip():
            return "the bot's base model"
        path = Path(self.model)
        if is_hub_id(self.model) and not path.exists():
            return self.model
        return path.name or self.model

    def describe(self) -> str:
        """'CreativeML OpenRAIL-M (<https://...>)' (angle brackets: Discord shows the link without a preview)."""
        if not self.known:
            return "a license the bot's operator has not stated (ask them for it)"
        return f"{self.name} (<{self.url}>)" if self.url else self.name

    def sentence(self) -> str:
        """The line shown at /train (inside the consent text) and in /subjects."""
        return f"Images are made with {self.model_name} under {self.describe()}."

    def operator_message(self) -> str:
        """What to tell the operator at start-up when the license could not be found."""
        return (f"The license of the base model {self.model!r} is unknown: it has no model card with a "
                "`license:` line, no `modelspec.license` in its file and is not a well-known model. Set "
                "trainer.model_license in config.toml (for example creativeml-openrail-m) so users are told it.")

    def as_dict(self) -> dict:
        return asdict(self)


def resolve(base_model: str, override: str = "") -> ModelLicense:
    """The license of `base_model` (see the module docstring for the order); never raises, never downloads."""
    revision = _hub_revision(base_model)
    if override.strip():
        license_id, url = _parse_override(override)
        return _make(base_model, revision, license_id, "config", url=url)
    card = _card_path(base_model)
    if card is not None:
        found = read_card(card)
        if found.get("license"):
            return _from_card(base_model, revision, found)
    path = Path(base_model).expanduser()
    if path.suffix == ".safetensors" and path.is_file():
        license_id = read_safetensors_metadata(path).get("modelspec.license", "").strip()
        if license_id:
            return _make(base_model, revision, license_id, "file metadata")
    known = KNOWN_MODELS.get(base_model.strip().lower())
    if known is None and path.suffix in SINGLE_FILE_SUFFIXES:
        known = next((lic for prefix, lic in KNOWN_FILES if path.name.lower().startswith(prefix)), None)
    if known is not None:
        return _make(base_model, revision, known, "known model")
    return replace(unstated(base_model), revision=revision)


def unstated(base_model: str = "") -> ModelLicense:
    """No license known (and nothing looked up): what the consent text says when none was passed."""
    return ModelLicense(model=base_model, revision=None, license=UNKNOWN, name="unknown license", url=None,
                        source=UNKNOWN)


def _make(model: str, revision: str | None, license_id: str, source: str, *, name: str | None = None,
          url: str | None = None) -> ModelLicense:
    known_name, known_url = LICENSES.get(license_id.lower(), (None, None))
    return ModelLicense(model=model, revision=revision, license=license_id, name=name or known_name or license_id,
                        url=url or known_url, source=source)


def _from_card(model: str, revision: str | None, card: dict[str, str]) -> ModelLicense:
    license_id = card["license"]
    # `license: other` names the real one in license_name / license_link (the Hub's card convention)
    name = card.get("license_name") if license_id.lower() == "other" else None
    url = card.get("license_link") if (card.get("license_link") or "").startswith("http") else None
    return _make(model, revision, license_id, "model card", name=name, url=url)


def _parse_override(text: str) -> tuple[str, str | None]:
    """'creativeml-openrail-m' or 'my-license https://example.com/license': the id, then an optional link."""
    words = text.split()
    urls = [w for w in words if w.startswith(("http://", "https://"))]
    rest = " ".join(w for w in words if w not in urls)
    return rest or text.strip(), urls[0] if urls else None


# --- model cards -------------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_KEYS = ("license", "license_name", "license_link")


def read_card(path: str | Path) -> dict[str, str]:
    """license, license_name and license_link from a model card's YAML front matter (only those keys, only
    their plain or quoted scalar values, or a list's first item); {} when the card has none."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}
    found: dict[str, str] = {}
    lines = match.group(1).splitlines()
    for i, line in enumerate(lines):
        key, sep, value = line.partition(":")
        if not sep or key != key.strip() or key not in _KEYS:
            continue  # indented lines belong to another key
        value = _scalar(value)
        if not value and i + 1 < len(lines) and lines[i + 1].lstrip().startswith("- "):
            value = _scalar(lines[i + 1].lstrip()[2:])  # license:\n  - mit
        if value:
            found[key] = value
    return found


def _scalar(value: str) -> str:
    """A YAML scalar: double-quoted (JSON's escapes), single-quoted ('' is '), or plain with an optional # comment."""
    value = value.strip()
    if value.startswith('"'):
        end = value.rfind('"')
        try:
            return str(json.loads(value[:end + 1])).strip() if end > 0 else value.strip('"')
        except ValueError:
            return value[1:end].strip()
    if value.startswith("'"):
        end = value.rfind("'")
        return value[1:end].replace("''", "'").strip() if end > 0 else value.strip("'")
    return value.split(" #", 1)[0].strip()


def write_card(folder: str | Path, *, license_id: str, title: str, body: str, license_name: str | None = None,
               license_link: str | None = None) -> Path:
    """Write README.md with a YAML `license:` front matter (the Hub's model-card layout) into `folder`."""
    lines = ["---", f"license: {license_id}"]
    if license_name:
        lines.append(f"license_name: {json.dumps(license_name)}")
    if license_link:
        lines.append(f"license_link: {license_link}")
    lines += ["---", "", f"# {title}", "", body.strip(), ""]
    path = Path(folder) / CARD_NAME
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_test_model_card(folder: str | Path, *, title: str) -> Path:
    """The model card of a model dreambot made itself for tests and the demo (random or toy weights):
    `license: other`, named, so the license is read from a card as for a downloaded model."""
    return write_card(folder, license_id="other", title=title,
                      license_name="dreambot test-model terms: made by dreambot for tests and the demo only",
                      body=f"{title}: made by dreambot, trained on no photographs and no web data. It exists "
                           "so that tests and the offline demo run the whole product; its images mean nothing. "
                           "Its tokenizer is CLIP's (MIT License), built from the files open-clip-torch ships.")


def _card_path(base_model: str) -> Path | None:
    path = Path(base_model).expanduser()
    if path.is_dir():
        card = path / CARD_NAME
        return card if card.is_file() else None
    if is_hub_id(base_model) and not path.exists():
        cached = from_hub_cache(base_model, CARD_NAME)
        return Path(cached) if cached else None
    return None


# --- the local Hugging Face cache ---------------------------------------------------------------------

def is_hub_id(source: str) -> bool:
    """Whether a base_model setting names a hub repository (owner/name), not a local folder or file."""
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and \
        Path(source).suffix not in SINGLE_FILE_SUFFIXES


def _hub_revision(base_model: str) -> str | None:
    """The commit hash of the cached snapshot a hub id loads from (None for local models or an empty cache)."""
    if not is_hub_id(base_model) or Path(base_model).expanduser().exists():
        return None
    for name in ("model_index.json", CARD_NAME):
        cached = from_hub_cache(base_model, name)
        if cached:
            return Path(cached).parent.name  # <cache>/models--owner--name/snapshots/<commit>/<file>
    return None


def from_hub_cache(repo_id: str, filename: str) -> str | None:
    """A file of the repository's cached main snapshot, or None; read where the worker reads models from."""
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:  # a bot-only install without huggingface_hub: the known-model table still answers
        return None
    # HF_HUB_CACHE is read when called (huggingface_hub reads it once, at import)
    cache_dir = os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
    try:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
    except Exception:  # a malformed id or cache: no answer from here
        log.debug("could not look up %s in the Hugging Face cache", repo_id, exc_info=True)
        return None
    return found if isinstance(found, str) else None


# --- single files ------------------------------------------------------------------------------------

def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The `__metadata__` table of a .safetensors file's header (8-byte length, then JSON); {} if none."""
    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > MAX_HEADER_BYTES:
                return {}
            header = json.loads(fh.read(size))
    except (OSError, struct.error, ValueError):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
