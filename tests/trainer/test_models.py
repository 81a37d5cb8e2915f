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


def test_fingerprint_hashes_the_middle_of_weight_files(tiny_model, tmp_path):
    """Overwriting bytes in the middle of a weight file changes the fingerprint."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    raw = bytearray(weights.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 16] = bytes(16)
    before = models.fingerprint(str(copy))
    weights.write_bytes(bytes(raw))
    assert models.fingerprint(str(copy)) != before


def test_fingerprint_hashes_each_file_once(tiny_model, tmp_path, monkeypatch):
    """With a hash cache, a second fingerprint of unchanged files reads no weight file."""
    import builtins

    cache = tmp_path / "hashes.json"
    first = models.fingerprint(str(tiny_model), cache_path=cache)
    opened = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    assert models.fingerprint(str(tiny_model), cache_path=cache) == first
    assert [f for f in opened if f.endswith(".safetensors")] == []


def test_fingerprint_depends_on_the_dtype(tiny_model):
    """The same weights run in another dtype make other images, so they key differently."""
    import torch

    assert models.fingerprint(str(tiny_model), dtype=torch.float32) != \
        models.fingerprint(str(tiny_model), dtype=torch.bfloat16)


def test_fingerprint_depends_on_the_hub_revision(tiny_model, tmp_path, monkeypatch):
    """A hub id's key holds the cached snapshot's commit, not only the id."""
    import shutil

    import huggingface_hub.constants

    repo = tmp_path / "cache" / "models--someone--tiny"
    (repo / "refs").mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    keys = []
    for commit in ("0" * 40, "1" * 40):
        shutil.copytree(tiny_model, repo / "snapshots" / commit)
        (repo / "refs" / "main").write_text(commit)
        keys.append(models.fingerprint("someone/tiny"))
    assert keys[0] != keys[1]


def _refused_folder(root, **index):
    import json

    root.mkdir()
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline", **index}))
    return root


@pytest.mark.parametrize("index", [{"_class_name": "StableDiffusion3Pipeline"}, {"_class_name": "FluxPipeline"}])
def test_unsupported_models_are_refused_at_load_for_good(tmp_path, index):
    """Loading an SD3 or Flux folder raises UnsupportedModel, which the worker never retries."""
    from storage.model_families import UnsupportedModel
    from trainer.worker import is_retryable

    with pytest.raises(UnsupportedModel, match="SDXL base") as caught:
        models.load_pipeline(str(_refused_folder(tmp_path / "m", **index)), models.pick_runtime("cpu"))
    assert not is_retryable(caught.value)


def test_an_sdxl_folder_loads_as_an_sdxl_pipeline_frozen(tmp_path):
    """An SDXL folder loads as StableDiffusionXLPipeline with both text encoders frozen."""
    from diffusers import StableDiffusionXLPipeline

    from trainer.tiny_model import build_random_pipeline

    build_random_pipeline("tiny-sdxl").save_pretrained(tmp_path / "xl")
    pipe = models.load_pipeline(str(tmp_path / "xl"), models.pick_runtime("cpu"))
    assert isinstance(pipe, StableDiffusionXLPipeline) and models.is_sdxl(pipe)
    assert not any(p.requires_grad for p in pipe.text_encoder_2.parameters())
    assert models.describe(pipe)["family"] == "sdxl"


def test_sdxl_vae_stays_fp32_under_half_precision():
    """In half precision SDXL's own VAE (force_upcast) stays fp32; an fp16-safe VAE runs in half precision."""
    import torch

    from trainer.tiny_model import build_random_pipeline

    half = models.Runtime("cpu", "bfloat16")
    pipe = models.prepare_pipeline(build_random_pipeline("tiny-sdxl"), half)
    assert (pipe.unet.dtype, pipe.vae.dtype) == (torch.bfloat16, torch.float32)
    safe = build_random_pipeline("tiny-sdxl")
    safe.vae.register_to_config(force_upcast=False)
    assert models.prepare_pipeline(safe, half).vae.dtype == torch.bfloat16


def test_a_vae_setting_replaces_the_models_vae(tiny_model, tmp_path):
    """trainer.vae names a VAE folder that is loaded in place of the base model's own."""
    import torch

    from trainer.tiny_model import build_random_pipeline

    build_random_pipeline("tiny", seed=5).vae.save_pretrained(tmp_path / "vae")
    pipe = models.load_pipeline(str(tiny_model), models.pick_runtime("cpu"), vae=str(tmp_path / "vae"))
    own = models.load_pipeline(str(tiny_model), models.pick_runtime("cpu")).vae.state_dict()
    assert not all(torch.equal(v, own[k]) for k, v in pipe.vae.state_dict().items())


def test_a_missing_vae_setting_names_the_setting(tiny_model, tmp_path):
    """A trainer.vae that cannot be loaded is reported as that setting's fault, not the base model's."""
    with pytest.raises(ModelNotFound, match="trainer.vae"):
        models.load_pipeline(str(tiny_model), models.pick_runtime("cpu"), vae=str(tmp_path))
