"""Which kind of base model a setting names, read from the model's own files (no torch, no network).

dreambot trains Stable Diffusion 1.x, 2.x (epsilon or v-prediction) and SDXL base. `detect` reads a
diffusers folder's `model_index.json` and its unet and scheduler configs, a hub id's snapshot in the
local Hugging Face cache, or a single `.safetensors` checkpoint's header (its tensor names and
shapes), and refuses everything else (SD3, Flux, SDXL refiners, inpainting models, ...) with one
message naming what is supported. The bot checks the configured model at start-up with it; the
trainer checks again when it loads the model.

A single SD 2.x file does not say whether it predicts noise or velocity. As diffusers does, it is
taken for v-prediction (SD 2.1 at 768 px) unless its `modelspec.prediction_type` metadata or its
file name ("512", "base") says epsilon; `trainer.single_file_config` overrides it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from storage import licenses
from storage.errors import DreambotError

SUPPORTED = ("sd1", "sd2", "sdxl")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
MAX_HEADER_BYTES = 100 * 1024 * 1024
SUPPORTED_TEXT = "Stable Diffusion 1.x, 2.x (epsilon or v-prediction) and SDXL base"

LABELS = {"sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x", "sdxl": "Stable Diffusion XL base"}
# Pipeline classes that are something else entirely, by the name their model_index.json gives.
REFUSED_PIPELINES = {
    "StableDiffusion3Pipeline": "Stable Diffusion 3", "FluxPipeline": "Flux",
    "StableDiffusionXLImg2ImgPipeline": "an SDXL refiner", "StableDiffusionInpaintPipeline": "an inpainting model",
    "StableDiffusionXLInpaintPipeline": "an SDXL inpainting model",
    "StableDiffusionUpscalePipeline": "an upscaler", "StableDiffusionInstructPix2PixPipeline": "InstructPix2Pix",
}


class UnsupportedModel(DreambotError):
    """The base model is not a family dreambot trains; never retried."""

    def __init__(self, what: str):
        super().__init__(f"dreambot trains {SUPPORTED_TEXT}; {what} is not supported. "
                         "Set trainer.base_model to one of those.")
        self.what = what


class ModelNotReadable(DreambotError):
    """The model's files are not on this machine (not downloaded yet, or a path that does not exist)."""


@dataclass(frozen=True)
class Family:
    name: str  # "sd1", "sd2" or "sdxl"
    prediction_type: str  # "epsilon" or "v_prediction"
    label: str  # e.g. "Stable Diffusion XL base"


def _family(name: str, prediction_type: str) -> Family:
    suffix = " (v-prediction)" if prediction_type == "v_prediction" else ""
    return Family(name, prediction_type, LABELS[name] + suffix)


def detect(source: str) -> Family:
    """The family of a diffusers folder, a cached hub id or a single-file checkpoint.

    Raises UnsupportedModel for any other model, ModelNotReadable when its files are not here.
    """
    path = Path(source).expanduser()
    if path.suffix in SINGLE_FILE_SUFFIXES:
        if not path.is_file():
            raise ModelNotReadable(f"base model file {source} does not exist.")
        if path.suffix != ".safetensors":
            raise ModelNotReadable(f"{source} is a pickled .ckpt file, whose tensor names need torch to read.")
        return detect_keys(read_safetensors_shapes(path), metadata=licenses.read_safetensors_metadata(path),
                           filename=path.name)
    if path.is_dir():
        return detect_folder(path)
    if licenses.is_hub_id(source):
        index = licenses.from_hub_cache(source, "model_index.json")
        if index is None:
            raise ModelNotReadable(f"{source} is not in the local Hugging Face cache; "
                                   f"download it once with `dreambot fetch-model {source}`.")
        return detect_folder(Path(index).parent)
    raise ModelNotReadable(f"base model {source} is neither a local folder or file nor a hub id (owner/name).")


def missing(source: str) -> str | None:
    """Why the base model can't be loaded on this machine (its files are not here), or None when they are.

    A pickled .ckpt that exists counts as present: only the worker, with torch, can read it. The reason
    names what to do, for `dreambot run` and `dreambot worker` to print at start-up.
    """
    try:
        detect(source)
    except UnsupportedModel:
        return None  # present, but of another family: refused where it is used, with its own message
    except ModelNotReadable as exc:
        path = Path(source).expanduser()
        if path.suffix in SINGLE_FILE_SUFFIXES and path.is_file():
            return None
        if licenses.is_hub_id(source):
            return str(exc)
        return (f"{exc} Set trainer.base_model to a diffusers folder or checkpoint file on this machine, or to a "
                "hub id and download it once with `dreambot fetch-model ID`.")
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def detect_folder(folder: str | Path) -> Family:
    """The family of a diffusers pipeline folder, from model_index.json and the unet and scheduler configs."""
    folder = Path(folder)
    index = _read_json(folder / "model_index.json")
    if not index:
        raise UnsupportedModel(f"{folder.name}, a folder with no readable model_index.json (not a diffusers "
                               "pipeline),")
    name = index.get("_class_name", "")
    if name in REFUSED_PIPELINES:
        raise UnsupportedModel(f"{REFUSED_PIPELINES[name]} ({name})")
    unet = _read_json(folder / "unet" / "config.json")
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    prediction_type = scheduler.get("prediction_type", "epsilon")
    if prediction_type not in ("epsilon", "v_prediction"):
        raise UnsupportedModel(f"a model predicting {prediction_type!r}")
    if unet.get("in_channels", 4) != 4:
        raise UnsupportedModel(f"an inpainting or image-conditioned model (its UNet reads {unet['in_channels']} "
                               "channels)")
    has_text_encoder = (index.get("text_encoder") or [None])[0] is not None
    if name == "StableDiffusionXLPipeline":
        if index.get("requires_aesthetics_score") or not has_text_encoder:
            raise UnsupportedModel("an SDXL refiner")
        if unet.get("addition_embed_type") != "text_time":
            raise UnsupportedModel(f"{name} with a UNet lacking SDXL's size conditioning")
        return _family("sdxl", prediction_type)
    if name != "StableDiffusionPipeline":
        raise UnsupportedModel(f"{name or 'a pipeline of no named class'}")
    return _family(sized_family(unet, prediction_type), prediction_type)


def sized_family(unet: dict, prediction_type: str) -> str:
    """'sd1' or 'sd2' for a StableDiffusionPipeline's UNet config (a dict) and its scheduler's prediction type.

    Real models say it by their text width (768 or 1024); for other sizes (the tiny test models) SD 2.x's
    UNet projects attention with linear layers, and only SD 2.x of the two was released predicting v.
    """
    dim = unet.get("cross_attention_dim")
    if dim in (768, 1024):
        return "sd1" if dim == 768 else "sd2"
    return "sd2" if unet.get("use_linear_projection") or prediction_type == "v_prediction" else "sd1"


def read_safetensors_shapes(path: str | Path) -> dict[str, list[int]]:
    """Each tensor's name and shape from a .safetensors header (8-byte little-endian length, then JSON)."""
    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > MAX_HEADER_BYTES:
                raise ValueError("header too large")
            header = json.loads(fh.read(size))
    except (OSError, struct.error, ValueError) as exc:
        raise UnsupportedModel(f"{Path(path).name}, which is not a readable .safetensors file ({exc}),") from exc
    return {k: list(v.get("shape", [])) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def _any_prefix(keys, *prefixes: str) -> bool:
    return any(k.startswith(prefixes) for k in keys)


def detect_keys(shapes: dict[str, list[int]], *, metadata: dict[str, str] | None = None,
                filename: str = "") -> Family:
    """The family of an original (LDM-layout) single-file checkpoint, from its tensor names and shapes."""
    keys = shapes.keys()
    if _any_prefix(keys, "joint_blocks.", "model.diffusion_model.joint_blocks.", "text_encoders."):
        raise UnsupportedModel("Stable Diffusion 3 (a single-file checkpoint)")
    if _any_prefix(keys, "double_blocks.", "model.diffusion_model.double_blocks."):
        raise UnsupportedModel("Flux (a single-file checkpoint)")
    if not _any_prefix(keys, "model.diffusion_model."):
        raise UnsupportedModel(f"{filename or 'this file'}, which holds no Stable Diffusion UNet "
                               "(a LoRA, a VAE or another kind of model?),")
    conv_in = shapes.get("model.diffusion_model.input_blocks.0.0.weight", [])
    if len(conv_in) == 4 and conv_in[1] != 4:
        raise UnsupportedModel(f"an inpainting or image-conditioned model (its UNet reads {conv_in[1]} channels)")
    if _any_prefix(keys, "conditioner.embedders.1."):
        return _family("sdxl", "epsilon")
    if _any_prefix(keys, "conditioner.embedders.0.model."):
        raise UnsupportedModel("an SDXL refiner")
    if _any_prefix(keys, "cond_stage_model.transformer."):
        return _family("sd1", "epsilon")
    if _any_prefix(keys, "cond_stage_model.model."):
        return _family("sd2", _sd2_prediction_type(metadata or {}, filename))
    raise UnsupportedModel(f"{filename or 'this file'}, a checkpoint with no text encoder dreambot knows,")


def _sd2_prediction_type(metadata: dict[str, str], filename: str) -> str:
    """What an SD 2.x file predicts: its modelspec says, else its name, else v (diffusers' rule: SD 2.1 768)."""
    stated = metadata.get("modelspec.prediction_type", "").lower()
    if stated in ("epsilon", "eps"):
        return "epsilon"
    if stated in ("v", "v_prediction", "v-prediction"):
        return "v_prediction"
    name = filename.lower()
    if "512" in name or "base" in name:
        return "epsilon"
    return "v_prediction"
