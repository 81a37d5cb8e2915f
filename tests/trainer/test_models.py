"""Finding and loading base models offline."""

from __future__ import annotations

import pytest

from trainer import models
from trainer.errors import ModelNotFound


def test_source_kind_tells_folders_files_and_hub_ids(tiny_model, tmp_path):
    """A diffusers folder, a .safetensors file and an owner/name id are told apart."""
    (tmp_path / "m.safetensors").write_bytes(b"")
    assert models.source_kind(str(tiny_model)) == "folder"
    assert models.source_kind(str(tmp_path / "m.safetensors")) == "single_file"
    assert models.source_kind("runwayml/stable-diffusion-v1-5") == "hub"


@pytest.mark.parametrize("source", ["./no/such/folder", "/no/such/model.safetensors", "no-slash-name"])
def test_missing_model_is_refused(source):
    """A path that does not exist is an input error naming it."""
    with pytest.raises(ModelNotFound):
        models.source_kind(source)


def test_uncached_hub_model_is_refused_offline():
    """A hub id that is not in the local cache fails with advice, not a download."""
    with pytest.raises(ModelNotFound, match="without the network"):
        models.load_pipeline("dreambot-tests/not-a-model", models.pick_runtime("cpu"))


def test_fingerprint_is_stable_and_content_based(tiny_model, tmp_path):
    """Two identical model folders share a fingerprint; a changed config changes it."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    assert models.fingerprint(str(copy)) == models.fingerprint(str(tiny_model))
    (copy / "unet" / "config.json").write_text((copy / "unet" / "config.json").read_text() + " ")
    assert models.fingerprint(str(copy)) != models.fingerprint(str(tiny_model))


def test_cpu_runtime_is_fp32():
    """On CPU the base weights stay fp32 whatever mixed_precision says."""
    assert models.pick_runtime("cpu", "bf16").dtype_name == "float32"


def test_a_folder_of_fp16_weights_loads_as_the_fp16_variant(tmp_path):
    """What fetch-model keeps (fp16 safetensors only) loads, cast to the runtime's dtype."""
    import torch

    from trainer.tiny_model import build_random_pipeline

    build_random_pipeline("tiny").save_pretrained(tmp_path / "m", variant="fp16")
    assert models.weights_variant(tmp_path / "m" / "unet") == "fp16"
    pipe = models.load_pipeline(str(tmp_path / "m"), models.pick_runtime("cpu"))
    assert pipe.unet.dtype == torch.float32


def test_a_cached_hub_id_loads_from_its_snapshot(tiny_model, tmp_path, monkeypatch):
    """A hub id is read from the local Hugging Face cache's snapshot for its main revision."""
    import shutil

    import huggingface_hub.constants

    repo = tmp_path / "cache" / "models--someone--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copytree(tiny_model, repo / "snapshots" / ("0" * 40))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert models.local_folder("someone/tiny") == repo / "snapshots" / ("0" * 40)
    assert models.load_pipeline("someone/tiny", models.pick_runtime("cpu")).unet.config.sample_size == 8
