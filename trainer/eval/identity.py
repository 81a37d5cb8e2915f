"""Whether a metric model is the one the DreamBooth paper scored with, so its figures may sit beside the paper's.

The paper used DINO ViT-S/16 (`facebook/dino-vits16`) and CLIP ViT-B/32 (`openai/clip-vit-base-patch32`).
Other models give other numbers (a tiny random stand-in's mean nothing at all), so a model counts
as the paper's only when all three of these hold:

- its name: the hub id it was loaded by (read from the local Hugging Face cache), the cache folder
  it sits in (`.../models--facebook--dino-vits16/snapshots/<commit>`), or the `_name_or_path` its
  config.json records (transformers 4 wrote it on `save_pretrained`; transformers 5 does not, so
  a copy saved elsewhere has no name and does not count: load it by its hub id instead);
- its architecture: the config's sizes are the paper model's, so a small model that merely sits
  under the paper's name (like the tests' tiny stand-ins) is caught;
- its weights are not a fresh random initialisation: transformers starts every LayerNorm at scale
  1 and shift 0, and training never leaves them all so.

What it cannot tell: other trained weights of the same architecture under the paper's name (a
fine-tuned copy, an edited cache). Only a hash of the real weight files would, and none is recorded here.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path, PurePath

import torch


@dataclass(frozen=True)
class PaperModel:
    hub_id: str
    label: str  # as the paper names it
    architecture: dict  # config fields that fix the architecture ("a.b" reads a nested config); the values it has


PAPER_MODELS = {
    "DINO": PaperModel("facebook/dino-vits16", "DINO ViT-S/16", {
        "model_type": "vit", "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
        "intermediate_size": 1536, "patch_size": 16, "image_size": 224}),
    "CLIP": PaperModel("openai/clip-vit-base-patch32", "CLIP ViT-B/32", {
        "model_type": "clip", "projection_dim": 512, "vision_config.hidden_size": 768,
        "vision_config.num_hidden_layers": 12, "vision_config.patch_size": 32, "vision_config.image_size": 224,
        "text_config.hidden_size": 512, "text_config.num_hidden_layers": 12}),
}

_CACHE_FOLDER = re.compile(r"^models--(.+?)--(.+)$")  # huggingface_hub's cache: models--{org}--{name}


@dataclass(frozen=True)
class Identity:
    role: str  # "DINO" or "CLIP"
    source: str  # what --dino-model / --clip-model named: a hub id or a folder
    name: str | None  # the hub id it is a copy of, as far as its source says; None when it does not say
    papers: bool  # the paper's model: its name, architecture and trained weights
    why: str | None  # when not the paper's: what was used instead, and how that was told


def claimed_name(source: str, saved_name: str | None = None) -> str | None:
    """The hub id a metric model is a copy of: the id itself, the cache folder holding it, else what its
    config.json recorded (`saved_name`); None when nothing says."""
    path = Path(source).expanduser()
    if not path.exists():
        return source  # a hub id, read from the local cache
    return _cache_name(path.resolve()) or (_recorded_name(saved_name) if saved_name else None)


def _cache_name(path: PurePath) -> str | None:
    """org/name when the path lies in huggingface_hub's cache (.../models--org--name/snapshots/<commit>)."""
    for part in reversed(path.parts):
        found = _CACHE_FOLDER.match(part)
        if found:
            return f"{found[1]}/{found[2]}"
    return None


def _recorded_name(recorded: str) -> str | None:
    """A config's `_name_or_path`: a hub id as it is; a path only when it lies in the hub cache."""
    path = PurePath(recorded)
    if path.is_absolute() or recorded.startswith((".", "~")) or Path(recorded).expanduser().exists():
        return _cache_name(path)
    return recorded


def saved_name(source: str) -> str | None:
    """The `_name_or_path` a local folder's config.json records (None for a hub id, or when it records none)."""
    config = Path(source).expanduser() / "config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text(encoding="utf-8")).get("_name_or_path") or None


def architecture_differences(role: str, config: dict) -> list[str]:
    """Each config field whose value is not the paper model's, as 'field value, not paper_value'."""
    out = []
    for key, want in PAPER_MODELS[role].architecture.items():
        got = config
        for part in key.split("."):
            got = got.get(part) if isinstance(got, dict) else None
        if got != want:
            out.append(f"{key} {got}, not {want}")
    return out


def fresh_init(model: torch.nn.Module) -> bool:
    """Whether every LayerNorm still holds transformers' initial scale 1 and shift 0: weights never trained."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm) and m.weight is not None]
    return bool(norms) and all(bool((m.weight == 1).all()) and (m.bias is None or bool((m.bias == 0).all()))
                               for m in norms)


def identify(role: str, source: str, *, name: str | None, config: dict, untrained: bool) -> Identity:
    """Whether the model loaded from `source` is the paper's, and if not, why not (every reason found)."""
    paper = PAPER_MODELS[role]
    reasons = []
    if name is None:
        reasons.append("a folder that does not say which model it is (not in the hub cache, no _name_or_path in "
                       f"its config.json; to use {paper.hub_id}, download it into the cache, pass its hub id)")
    elif name != paper.hub_id:
        reasons.append(f"{name}, not {paper.hub_id}")
    differences = architecture_differences(role, config)
    if differences:
        reasons.append(f"not {paper.label}'s architecture ({'; '.join(differences)})")
    if untrained:
        reasons.append("random weights, never trained (every LayerNorm still at its initial scale 1 and shift "
                       "0), a stand-in like the tests' tiny models")
    why = f"{role} {source}: " + "; ".join(reasons) if reasons else None
    return Identity(role=role, source=source, name=name, papers=not reasons, why=why)


def of_loaded(role: str, source: str, model: torch.nn.Module) -> Identity:
    """The identity of a metric model just loaded from `source` (a hub id or a folder)."""
    return identify(role, source, name=claimed_name(source, saved_name(source)), config=model.config.to_dict(),
                    untrained=fresh_init(model))


def comparison(dino: Identity, clip: Identity) -> dict:
    """The report's fields: whether its figures compare with the paper's, why not, and each model's identity."""
    reasons = [i.why for i in (dino, clip) if not i.papers]
    return {"comparable_to_paper": not reasons, "why_not_comparable": "; ".join(reasons) or None,
            "metric_models": {"dino": asdict(dino), "clip": asdict(clip)}}
