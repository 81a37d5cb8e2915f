"""LoRA adapters: diffusers and kohya files, metadata, loading into a fresh pipeline."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch
from safetensors import safe_open

from trainer import lora
from trainer.atomic import atomic_dir, atomic_file

META = {"base_model": "tiny", "token": "sks", "class_noun": "dog", "steps": 3, "rank": 4, "alpha": 8.0,
        "photo_sha256": ["ab" * 32]}


def _trained(pipe, *, text_encoder: bool):
    """Adapters with non-zero weights, as after some training."""
    params = lora.add_train_adapters(pipe, rank=4, alpha=8.0, text_encoder=text_encoder)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return params


def _image(pipe, prompt="a photo of sks dog"):
    return pipe(prompt, num_inference_steps=2, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(0)).images


def test_adapters_train_only_lora_in_fp32(pipe):
    """Only the LoRA tensors require gradients, and they are fp32."""
    params = lora.add_train_adapters(pipe, rank=4, alpha=4.0, text_encoder=False)
    trainable = [p for p in pipe.unet.parameters() if p.requires_grad]
    assert len(trainable) == len(params) > 0 and all(p.dtype == torch.float32 for p in params)
    assert not any(p.requires_grad for p in pipe.text_encoder.parameters())


def test_metadata_is_in_the_safetensors_header(pipe, tmp_path):
    """Base model, token, class, steps, rank, alpha and photo hashes are in the header."""
    _trained(pipe, text_encoder=False)
    path = lora.save_adapter(pipe, tmp_path, metadata=META)
    assert path.name == "pytorch_lora_weights.safetensors"
    assert lora.read_metadata(tmp_path) == META


@pytest.mark.parametrize("text_encoder", [False, True])
def test_saved_adapter_reproduces_the_trained_model(pipe, tiny_model, tmp_path, text_encoder):
    """A fresh pipeline with the saved adapter makes the trained pipeline's image, unlike the base model."""
    from trainer import models

    _trained(pipe, text_encoder=text_encoder)
    lora.save_adapter(pipe, tmp_path, metadata=META)
    trained = _image(pipe)
    fresh = models.load_pipeline(str(tiny_model), models.pick_runtime("cpu"))
    base = _image(fresh)
    lora.load_adapter(fresh, tmp_path, "rex")
    assert abs(base - trained).max() > 1e-3
    assert abs(_image(fresh) - trained).max() < 1e-4


def test_every_trained_tensor_loads_back(pipe, tiny_model, tmp_path):
    """Attention, feed-forward and projection LoRA tensors all come back from the file, exactly."""
    from trainer import models

    _trained(pipe, text_encoder=False)
    trained = {n.replace(f".{lora.TRAIN_ADAPTER}", ""): p.detach().clone()
               for n, p in pipe.unet.named_parameters() if "lora_" in n}
    lora.save_adapter(pipe, tmp_path, metadata=META)
    fresh = models.load_pipeline(str(tiny_model), models.pick_runtime("cpu"))
    lora.load_adapter(fresh, tmp_path, "rex")
    loaded = {n.replace(".rex", ""): p for n, p in fresh.unet.named_parameters() if "lora_" in n}
    assert loaded.keys() == trained.keys()
    assert {t for t in lora.UNET_TARGETS if any(f".{t}.lora_A" in k for k in loaded)} == set(lora.UNET_TARGETS)
    for k, v in trained.items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)


def test_kohya_copy_has_kohya_names_and_alpha(pipe, tmp_path):
    """The kohya file uses sd-scripts' key names, lora_te_ for SD 1.x, and the real alpha."""
    _trained(pipe, text_encoder=True)
    path = lora.save_kohya(pipe, tmp_path / "k.safetensors", rank=4, alpha=8.0, metadata=META)
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        alpha = f.get_tensor("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha")
        header = f.metadata()
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_up.weight" in keys
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_0_proj.lora_down.weight" in keys
    assert "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight" in keys
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in keys
    assert all(k.startswith(("lora_unet_", "lora_te_")) for k in keys)
    assert alpha.item() == 8.0 and header["ss_network_dim"] == "4"


def test_removing_train_adapters_restores_the_base(pipe):
    """After training the shared pipeline is the plain base model again."""
    before = _image(pipe)
    _trained(pipe, text_encoder=True)
    lora.remove_train_adapters(pipe)
    assert abs(_image(pipe) - before).max() == 0


def test_kohya_header_names_the_steps_done(pipe, tmp_path):
    """sd-scripts' ss_steps says how far training had got when the file was saved (a checkpoint's step)."""
    _trained(pipe, text_encoder=False)
    path = lora.save_kohya(pipe, tmp_path / "k.safetensors", rank=4, alpha=8.0,
                           metadata={**META, "steps_done": 2})
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    assert header["ss_steps"] == "2" and header["ss_max_train_steps"] == "3"


def test_saving_over_an_existing_adapter_replaces_it_whole(pipe, tmp_path):
    """An adapter saved atomically over an older one leaves only the new files and no temporary sibling."""
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "stale.txt").write_text("from an older save")
    _trained(pipe, text_encoder=False)
    with atomic_dir(target) as tmp:
        lora.save_adapter(pipe, tmp, metadata=META)
    assert sorted(p.name for p in target.iterdir()) == [lora.WEIGHT_NAME]
    assert lora.read_metadata(target) == META
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_a_failed_save_leaves_no_file_and_no_temporary(pipe, tmp_path, monkeypatch, fmt):
    """When the safetensors writer fails mid-save, neither the target nor a temporary sibling is left."""
    _trained(pipe, text_encoder=True)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        if fmt == "diffusers":
            with atomic_dir(tmp_path / "adapter") as tmp:
                lora.save_adapter(pipe, tmp, metadata=META)
        else:
            with atomic_file(tmp_path / "kohya.safetensors") as tmp:
                lora.save_kohya(pipe, tmp, rank=4, alpha=8.0, metadata=META)
    assert list(tmp_path.iterdir()) == []


def _header(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_kohya_header_records_the_license_base_model_and_revision(pipe, tmp_path, monkeypatch):
    """A kohya file of an SD 1.5 LoRA carries modelspec.license, and the base model id and cached revision."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--runwayml--stable-diffusion-v1-5"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model_index.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    _trained(pipe, text_encoder=False)
    path = lora.save_kohya(pipe, tmp_path / "k.safetensors", rank=4, alpha=8.0,
                           metadata={**META, "base_model": "runwayml/stable-diffusion-v1-5"})
    recorded = lora.read_license(path)
    assert _header(path)["modelspec.license"] == "creativeml-openrail-m"
    assert (recorded["model"], recorded["revision"], recorded["name"]) == (
        "runwayml/stable-diffusion-v1-5", commit, "CreativeML OpenRAIL-M")


def test_diffusers_file_records_the_operator_s_license(pipe, tmp_path):
    """trainer.model_license, passed in the metadata, is what the diffusers file records (and is not kept as
    metadata itself)."""
    _trained(pipe, text_encoder=False)
    path = lora.save_adapter(pipe, tmp_path, metadata={**META, "model_license": "acme-terms https://example.com/t"})
    assert _header(path)["modelspec.license"] == "acme-terms"
    assert lora.read_license(tmp_path)["url"] == "https://example.com/t" and lora.read_metadata(tmp_path) == META


def test_an_unknown_license_is_not_written_as_modelspec(pipe, tmp_path):
    """A base model whose license is unknown gets no modelspec.license; dreambot.license says unknown."""
    _trained(pipe, text_encoder=False)
    path = lora.save_kohya(pipe, tmp_path / "k.safetensors", rank=4, alpha=8.0, metadata=META)
    assert "modelspec.license" not in _header(path) and lora.read_license(path)["license"] == "unknown"


@pytest.mark.parametrize(("prediction_type", "version", "v2"), [("epsilon", "sd_v1", "False"),
                                                                 ("v_prediction", "sd_v2_v", "True")])
def test_kohya_version_agrees_with_the_prediction_type(pipe, tmp_path, prediction_type, version, v2):
    """ss_base_model_version says v-prediction as sd-scripts spells it, agreeing with ss_v2."""
    _trained(pipe, text_encoder=False)
    path = lora.save_kohya(pipe, tmp_path / "k.safetensors", rank=4, alpha=8.0,
                           metadata={**META, "prediction_type": prediction_type})
    assert (_header(path)["ss_base_model_version"], _header(path)["ss_v2"]) == (version, v2)


@pytest.mark.parametrize(("text_width", "prediction_type", "version", "v2", "architecture"), [
    (32, "epsilon", "sd_v1", "False", "stable-diffusion-v1/lora"),
    (1024, "epsilon", "sd_v2", "True", "stable-diffusion-v2-512/lora"),
    (1024, "v_prediction", "sd_v2_v", "True", "stable-diffusion-v2-768-v/lora"),
])
def test_kohya_header_names_the_family(pipe, tmp_path, text_width, prediction_type, version, v2, architecture):
    """sd-scripts' version and the model spec's architecture follow the family: SD 2.x (1024-wide text states)
    says sd_v2 whether it predicts epsilon or v."""
    pipe.unet.register_to_config(cross_attention_dim=text_width)  # only the config: the family is read from it
    _trained(pipe, text_encoder=False)
    path = lora.save_kohya(pipe, tmp_path / "k.safetensors", rank=4, alpha=8.0,
                           metadata={**META, "prediction_type": prediction_type})
    header = _header(path)
    assert (header["ss_base_model_version"], header["ss_v2"], header["modelspec.architecture"]) == (
        version, v2, architecture)
