"""`dreambot fetch-model`'s choice of files, on the file lists of real repositories (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer import fetch

# stable-diffusion-v1-5/stable-diffusion-v1-5 (the maintained copy of runwayml/stable-diffusion-v1-5)
SD15_FILES = """
.gitattributes README.md model_index.json v1-inference.yaml
v1-5-pruned-emaonly.ckpt v1-5-pruned-emaonly.safetensors v1-5-pruned.ckpt v1-5-pruned.safetensors
feature_extractor/preprocessor_config.json
safety_checker/config.json safety_checker/model.fp16.safetensors safety_checker/model.safetensors
safety_checker/pytorch_model.bin safety_checker/pytorch_model.fp16.bin
scheduler/scheduler_config.json
text_encoder/config.json text_encoder/model.fp16.safetensors text_encoder/model.safetensors
text_encoder/pytorch_model.bin text_encoder/pytorch_model.fp16.bin
tokenizer/merges.txt tokenizer/special_tokens_map.json tokenizer/tokenizer_config.json tokenizer/vocab.json
unet/config.json unet/diffusion_pytorch_model.bin unet/diffusion_pytorch_model.fp16.bin
unet/diffusion_pytorch_model.fp16.safetensors unet/diffusion_pytorch_model.non_ema.bin
unet/diffusion_pytorch_model.non_ema.safetensors unet/diffusion_pytorch_model.safetensors
vae/config.json vae/diffusion_pytorch_model.bin vae/diffusion_pytorch_model.fp16.bin
vae/diffusion_pytorch_model.fp16.safetensors vae/diffusion_pytorch_model.safetensors
""".split()
SD15_INDEX = {
    "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.6.0",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

# stabilityai/stable-diffusion-xl-base-1.0
SDXL_FILES = """
.gitattributes 01.png LICENSE.md README.md comparison.png model_index.json pipeline.png
sd_xl_base_1.0.safetensors sd_xl_base_1.0_0.9vae.safetensors sd_xl_offset_example-lora_1.0.safetensors
scheduler/scheduler_config.json
text_encoder/config.json text_encoder/flax_model.msgpack text_encoder/model.fp16.safetensors
text_encoder/model.onnx text_encoder/model.safetensors text_encoder/openvino_model.bin
text_encoder/openvino_model.xml
text_encoder_2/config.json text_encoder_2/flax_model.msgpack text_encoder_2/model.fp16.safetensors
text_encoder_2/model.onnx text_encoder_2/model.onnx_data text_encoder_2/model.safetensors
text_encoder_2/openvino_model.bin text_encoder_2/openvino_model.xml
tokenizer/merges.txt tokenizer/special_tokens_map.json tokenizer/tokenizer_config.json tokenizer/vocab.json
tokenizer_2/merges.txt tokenizer_2/special_tokens_map.json tokenizer_2/tokenizer_config.json
tokenizer_2/vocab.json
unet/config.json unet/diffusion_flax_model.msgpack unet/diffusion_pytorch_model.fp16.safetensors
unet/diffusion_pytorch_model.onnx unet/diffusion_pytorch_model.onnx_data unet/diffusion_pytorch_model.safetensors
unet/openvino_model.bin unet/openvino_model.xml
vae/config.json vae/diffusion_flax_model.msgpack vae/diffusion_pytorch_model.fp16.safetensors
vae/diffusion_pytorch_model.safetensors
vae_1_0/config.json vae_1_0/diffusion_pytorch_model.fp16.safetensors vae_1_0/diffusion_pytorch_model.safetensors
vae_decoder/config.json vae_decoder/model.onnx vae_decoder/openvino_model.bin vae_decoder/openvino_model.xml
vae_encoder/config.json vae_encoder/model.onnx vae_encoder/openvino_model.bin vae_encoder/openvino_model.xml
""".split()
SDXL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.19.0.dev0",
    "force_zeros_for_empty_prompt": True, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
}

# CompVis/stable-diffusion-safety-checker
CHECKER_FILES = """
.gitattributes README.md config.json flax_model.msgpack model.safetensors preprocessor_config.json pytorch_model.bin
""".split()


def test_sd15_gets_fp16_safetensors_of_each_component_and_its_own_checker():
    """SD 1.5: configs, tokenizer files and the fp16 safetensors of each component, the model card; no .bin,
    .ckpt, EMA copies or single-file checkpoints."""
    assert fetch.choose_files(SD15_FILES, SD15_INDEX) == sorted("""
        README.md model_index.json feature_extractor/preprocessor_config.json
        safety_checker/config.json safety_checker/model.fp16.safetensors scheduler/scheduler_config.json
        text_encoder/config.json text_encoder/model.fp16.safetensors
        tokenizer/merges.txt tokenizer/special_tokens_map.json tokenizer/tokenizer_config.json tokenizer/vocab.json
        unet/config.json unet/diffusion_pytorch_model.fp16.safetensors
        vae/config.json vae/diffusion_pytorch_model.fp16.safetensors
    """.split())


def test_sd15_ships_its_own_checker():
    """So fetch-model does not download the standard one beside it."""
    assert fetch.ships_safety_checker(fetch.choose_files(SD15_FILES, SD15_INDEX))


def test_sdxl_gets_only_the_components_model_index_names():
    """SDXL: both text encoders and tokenizers, fp16 safetensors; not vae_1_0, ONNX, Flax or OpenVINO copies."""
    chosen = fetch.choose_files(SDXL_FILES, SDXL_INDEX)
    assert chosen == sorted("""
        LICENSE.md README.md model_index.json scheduler/scheduler_config.json
        text_encoder/config.json text_encoder/model.fp16.safetensors
        text_encoder_2/config.json text_encoder_2/model.fp16.safetensors
        tokenizer/merges.txt tokenizer/special_tokens_map.json tokenizer/tokenizer_config.json tokenizer/vocab.json
        tokenizer_2/merges.txt tokenizer_2/special_tokens_map.json tokenizer_2/tokenizer_config.json
        tokenizer_2/vocab.json
        unet/config.json unet/diffusion_pytorch_model.fp16.safetensors
        vae/config.json vae/diffusion_pytorch_model.fp16.safetensors
    """.split())
    assert not fetch.ships_safety_checker(chosen)


def test_the_standard_checker_is_a_single_model_at_the_root():
    """CompVis/stable-diffusion-safety-checker: its config, image-processor config and safetensors weights."""
    assert fetch.choose_files(CHECKER_FILES) == ["README.md", "config.json", "model.safetensors",
                                                 "preprocessor_config.json"]


def test_plain_safetensors_where_there_is_no_fp16_variant():
    """A component without an fp16 copy gets its plain safetensors; EMA variants stay behind."""
    files = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
             "unet/diffusion_pytorch_model.ema.safetensors", "unet/diffusion_pytorch_model.bin"]
    assert fetch.choose_files(files, {"unet": ["diffusers", "UNet2DConditionModel"]}) == [
        "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"]


def test_sharded_weights_come_with_their_index():
    """Sharded fp16 weights: every shard and the fp16 index, not the plain ones."""
    files = ["model_index.json", "unet/config.json",
             "unet/diffusion_pytorch_model-00001-of-00002.fp16.safetensors",
             "unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors",
             "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
             "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
             "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
             "unet/diffusion_pytorch_model.safetensors.index.json"]
    assert fetch.choose_files(files, {"unet": ["diffusers", "UNet2DConditionModel"]}) == [
        "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model-00001-of-00002.fp16.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json"]


def test_a_component_with_only_pickled_weights_is_refused():
    """dreambot loads safetensors only: a .bin-only component is an error naming it, not a silent gap."""
    files = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.bin"]
    with pytest.raises(fetch.FetchError, match="unet has no plain or fp16 safetensors"):
        fetch.choose_files(files, {"unet": ["diffusers", "UNet2DConditionModel"]})


def test_null_components_are_skipped():
    """A pipeline that lists safety_checker as [null, null] ships none."""
    assert fetch.components({**SD15_INDEX, "safety_checker": [None, None]}) == [
        "feature_extractor", "scheduler", "text_encoder", "tokenizer", "unet", "vae"]


@pytest.mark.parametrize(("revision", "line"), [
    (None, 'base_model = "stable-diffusion-v1-5/stable-diffusion-v1-5"'),
    ("main", 'base_model = "stable-diffusion-v1-5/stable-diffusion-v1-5"'),
    ("abc123", 'base_model = "/cache/snap"  # stable-diffusion-v1-5/stable-diffusion-v1-5 at abc123'),
])
def test_config_line_names_the_id_or_the_pinned_snapshot(revision, line):
    """The main revision loads by id from the cache; a pinned one by its snapshot folder."""
    fetched = fetch.Fetched(fetch.DEFAULT_MODEL, Path("/cache/snap"), (), revision)
    assert fetch.config_line(fetched) == line


def test_a_fetched_checker_is_named_as_the_safety_checker():
    """`dreambot fetch-model CompVis/stable-diffusion-safety-checker` prints the safety_checker line."""
    fetched = fetch.Fetched(fetch.STANDARD, Path("/cache/snap"), (), None, pipeline=False)
    assert fetch.config_line(fetched) == 'safety_checker = "CompVis/stable-diffusion-safety-checker"'


def test_offline_fetch_fails_with_advice():
    """With the network off (as in the tests) fetch-model says what is wrong instead of a traceback."""
    with pytest.raises(fetch.FetchError, match="HF_HUB_OFFLINE must not be set"):
        fetch.fetch("stable-diffusion-v1-5/stable-diffusion-v1-5")
