"""Telling the supported model families apart, and refusing the rest, from the model's own files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from storage import model_families
from storage.model_families import UnsupportedModel


def write_folder(root: Path, *, pipeline: str = "StableDiffusionPipeline", unet: dict | None = None,
                 prediction_type: str = "epsilon", text_encoder: bool = True, **index) -> Path:
    """A diffusers folder holding only the configs detection reads."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text(json.dumps(
        {"_class_name": pipeline, "text_encoder": ["transformers", "CLIPTextModel"] if text_encoder else [None, None],
         **index}))
    for sub, name, config in (("unet", "config.json", unet or {"cross_attention_dim": 768, "in_channels": 4}),
                              ("scheduler", "scheduler_config.json", {"prediction_type": prediction_type})):
        (root / sub).mkdir(exist_ok=True)
        (root / sub / name).write_text(json.dumps(config))
    return root


def write_header(path: Path, shapes: dict[str, list[int]], metadata: dict[str, str] | None = None) -> Path:
    """A .safetensors file whose header names the tensors (no data: detection reads only the header)."""
    header = {k: {"dtype": "F32", "shape": v, "data_offsets": [0, 0]} for k, v in shapes.items()}
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


UNET = {"model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3]}
SD1 = {**UNET, "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": [77, 768]}
SD2 = {**UNET, "cond_stage_model.model.token_embedding.weight": [49408, 1024]}
SDXL = {**UNET, "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": [77, 768],
        "conditioner.embedders.1.model.positional_embedding": [77, 1280]}


@pytest.mark.parametrize(("unet", "prediction_type", "family"), [
    ({"cross_attention_dim": 768}, "epsilon", "sd1"),
    ({"cross_attention_dim": 1024, "use_linear_projection": True}, "v_prediction", "sd2"),
    ({"cross_attention_dim": 1024, "use_linear_projection": True}, "epsilon", "sd2"),
    ({"cross_attention_dim": 32}, "epsilon", "sd1"),
    ({"cross_attention_dim": 32, "use_linear_projection": True}, "v_prediction", "sd2"),
    ({"cross_attention_dim": 32}, "v_prediction", "sd2"),
    ({"cross_attention_dim": 768}, "v_prediction", "sd1"),
])
def test_sd_folders_are_told_apart_by_their_unet(tmp_path, unet, prediction_type, family):
    """SD 1.x and 2.x folders are recognised from the UNet config, with the scheduler's prediction type."""
    found = model_families.detect(str(write_folder(tmp_path / "m", unet=unet, prediction_type=prediction_type)))
    assert (found.name, found.prediction_type) == (family, prediction_type)


def test_sdxl_base_folder_is_recognised(tmp_path):
    """An SDXL pipeline with a text encoder and size conditioning is SDXL base."""
    folder = write_folder(tmp_path / "m", pipeline="StableDiffusionXLPipeline",
                          unet={"cross_attention_dim": 2048, "addition_embed_type": "text_time"})
    assert model_families.detect(str(folder)) == model_families.Family("sdxl", "epsilon", "Stable Diffusion XL base")


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"pipeline": "StableDiffusion3Pipeline"}, "Stable Diffusion 3"),
    ({"pipeline": "FluxPipeline"}, "Flux"),
    ({"pipeline": "StableDiffusionXLPipeline", "text_encoder": False, "requires_aesthetics_score": True,
      "unet": {"cross_attention_dim": 1280, "addition_embed_type": "text_time"}}, "refiner"),
    ({"unet": {"cross_attention_dim": 768, "in_channels": 9}}, "inpainting"),
    ({"pipeline": "KandinskyPipeline"}, "KandinskyPipeline"),
])
def test_other_folders_are_refused_naming_what_is_supported(tmp_path, kwargs, named):
    """SD3, Flux, refiners, inpainting and unknown pipelines are refused with one message."""
    with pytest.raises(UnsupportedModel, match=named) as caught:
        model_families.detect(str(write_folder(tmp_path / "m", **kwargs)))
    assert "1.x, 2.x (epsilon or v-prediction) and SDXL base" in str(caught.value)
    assert "Set trainer.base_model" in str(caught.value)


@pytest.mark.parametrize(("shapes", "filename", "metadata", "expected"), [
    (SD1, "model.safetensors", None, ("sd1", "epsilon")),
    (SD2, "v2-1_768-ema-pruned.safetensors", None, ("sd2", "v_prediction")),
    (SD2, "v2-1_512-ema-pruned.safetensors", None, ("sd2", "epsilon")),
    (SD2, "model.safetensors", {"modelspec.prediction_type": "epsilon"}, ("sd2", "epsilon")),
    (SDXL, "model.safetensors", None, ("sdxl", "epsilon")),
])
def test_single_files_are_recognised_from_their_keys(tmp_path, shapes, filename, metadata, expected):
    """A single file's tensor names give its family; an SD 2.x file is v-prediction unless told otherwise."""
    found = model_families.detect(str(write_header(tmp_path / filename, shapes, metadata)))
    assert (found.name, found.prediction_type) == expected


@pytest.mark.parametrize(("shapes", "named"), [
    ({"model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": [1]}, "Stable Diffusion 3"),
    ({"double_blocks.0.img_attn.norm.key_norm.scale": [1]}, "Flux"),
    ({**SD1, "model.diffusion_model.input_blocks.0.0.weight": [320, 9, 3, 3]}, "inpainting"),
    ({**UNET, "conditioner.embedders.0.model.text_projection": [1280, 1280]}, "refiner"),
    ({"lora_unet_down_blocks_0.alpha": []}, "no Stable Diffusion UNet"),
])
def test_other_single_files_are_refused(tmp_path, shapes, named):
    """SD3, Flux, inpainting, refiner and non-model files are refused from their keys."""
    with pytest.raises(UnsupportedModel, match=named):
        model_families.detect(str(write_header(tmp_path / "m.safetensors", shapes)))


def test_uncached_hub_id_is_not_readable(tmp_path, monkeypatch):
    """A hub id missing from the local cache is reported as not downloaded, naming fetch-model."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(model_families.ModelNotReadable, match="dreambot fetch-model"):
        model_families.detect("someone/absent")


def test_cached_hub_id_is_read_from_its_snapshot(tmp_path, monkeypatch):
    """A hub id's family is read from its snapshot in the local cache."""
    repo = tmp_path / "models--someone--xl"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    write_folder(repo / "snapshots" / ("0" * 40), pipeline="StableDiffusionXLPipeline",
                 unet={"cross_attention_dim": 2048, "addition_embed_type": "text_time"})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert model_families.detect("someone/xl").name == "sdxl"
