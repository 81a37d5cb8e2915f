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
