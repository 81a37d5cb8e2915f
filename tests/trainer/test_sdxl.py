"""SDXL LoRA DreamBooth on the tiny SDXL model: conditioning, training, resume, generation and both export formats."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from tests.helpers import random_adapter
from trainer import data, lora, models, train
from trainer.config import TrainConfig
from trainer.errors import PromptTooLong
from trainer.generate import ImageGenerator, check_prompt_fits


def _load(tiny_sdxl_model):
    return models.load_pipeline(str(tiny_sdxl_model), models.pick_runtime("cpu"))


def _fresh(tiny_sdxl_model):
    """A plain diffusers StableDiffusionXLPipeline, as someone outside dreambot would load the base model."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_model), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(pipe, prompt="a photo of sks dog"):
    return pipe(prompt, num_inference_steps=2, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(0)).images


@pytest.fixture(scope="module")
def sdxl_pipe(tiny_sdxl_model):
    """The tiny SDXL model loaded as the worker loads it (shared: training removes its adapters afterwards)."""
    return _load(tiny_sdxl_model)


@pytest.fixture(scope="module")
def sdxl_cfg(tiny_sdxl_model):
    return TrainConfig(base_model=str(tiny_sdxl_model), steps=4, rank=4, alpha=4.0, resolution=64, class_images=2,
                       checkpoint_every=2, keep_checkpoints=1, sample_steps=2, warmup_steps=0, device="cpu",
                       mixed_precision="no", eval_prompts=(), sample_seeds=(0,), grid_images=1,
                       grid_steps=0, final_grid_images=1, final_grid_steps=0, learning_rate=1e-3)


@pytest.fixture(scope="module")
def sdxl_class_dir(sdxl_pipe, sdxl_cfg, tmp_path_factory):
    return data.generate_class_images(sdxl_pipe, tmp_path_factory.mktemp("sdxl") / "classes",
                                      prompt=sdxl_cfg.class_prompt, count=2, resolution=64, steps=2, guidance=7.5)


def _run(pipe, cfg, photo_paths, class_dir, out, callbacks=None):
    return train.train(pipe, models.pick_runtime("cpu"), cfg, instance_paths=photo_paths, class_dir=class_dir,
                       out_dir=out, export_dir=out / "adapter", kohya_path=out / "kohya.safetensors",
                       metadata={"photo_sha256": ["00"]}, callbacks=callbacks)


@pytest.fixture(scope="module")
def trained(sdxl_pipe, sdxl_cfg, photo_dir, sdxl_class_dir, tmp_path_factory):
    """One run with prior preservation and both text encoders' LoRA, exported in both formats."""
    from tests.trainer.conftest import PHOTOS

    class Losses(train.Callbacks):
        prior: list[float] = []

        def on_progress(self, progress):
            self.prior.append(progress.prior_loss)

    cfg = dataclasses.replace(sdxl_cfg, train_text_encoder=True)
    photos = [photo_dir / f"{name}.png" for name in PHOTOS]
    result = _run(sdxl_pipe, cfg, photos, sdxl_class_dir, tmp_path_factory.mktemp("sdxl-job"), Losses())
    result.prior_losses = Losses.prior
    return result


def test_tiny_sdxl_model_loads_as_an_sdxl_pipeline(sdxl_pipe):
    """make-tiny-model --arch sdxl saves a model that loads as StableDiffusionXLPipeline with SDXL's parts."""
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextModelWithProjection

    assert isinstance(sdxl_pipe, StableDiffusionXLPipeline) and models.is_sdxl(sdxl_pipe)
    assert isinstance(sdxl_pipe.text_encoder_2, CLIPTextModelWithProjection)
    assert sdxl_pipe.unet.config.addition_embed_type == "text_time"
    assert sdxl_pipe.unet.config.cross_attention_dim == (sdxl_pipe.text_encoder.config.hidden_size
                                                         + sdxl_pipe.text_encoder_2.config.hidden_size)


def test_text_states_match_the_pipeline_s_own_encoding(sdxl_pipe):
    """Both encoders' penultimate states side by side and the pooled projection equal what the pipeline computes."""
    prompt = "a photo of sks dog"
    ids = data.token_ids(sdxl_pipe.tokenizer, prompt), data.token_ids(sdxl_pipe.tokenizer_2, prompt)
    with torch.no_grad():
        hidden, pooled = data.sdxl_text_states(sdxl_pipe, *ids)
        expected, _, expected_pooled, _ = sdxl_pipe.encode_prompt(prompt, do_classifier_free_guidance=False)
    torch.testing.assert_close(hidden, expected)
    torch.testing.assert_close(pooled, expected_pooled)


def test_time_ids_of_a_cropped_image_equal_its_crop(tmp_path):
    """A wide photo's time ids hold its size, the crop load_image takes (mirrored for the flip) and the target."""
    rng = np.random.default_rng(0)
    path = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 255, (60, 100, 3), dtype=np.uint8)).save(path)
    crop = data.image_crop(path, 32)
    ids = data.time_ids([crop], flip=True)
    assert ids.tolist() == [[60, 100, 0, 10, 32, 32], [60, 100, 0, 11, 32, 32]]
    with Image.open(path) as im:
        resized = im.convert("RGB").resize((53, 32), Image.Resampling.LANCZOS, reducing_gap=3.0)
    expected = np.asarray(resized)[:, 10:42]
    assert np.array_equal(np.asarray(data.load_image(path, 32)), expected)
    assert np.array_equal(np.asarray(resized)[:, ::-1][:, 11:43], expected[:, ::-1])  # the flip's crop, mirrored


def test_each_drawn_latent_comes_with_its_own_time_ids():
    """LatentPool.draw returns, for every latent, the time ids of the image it was drawn from."""
    n = 5
    mean = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 4, 2, 2).clone()
    pool = data.LatentPool(mean, torch.zeros_like(mean), torch.arange(n, dtype=torch.float32).view(n, 1).repeat(1, 6))
    latents, ids = pool.draw(16, torch.Generator().manual_seed(0), 1.0)
    assert torch.equal(latents[:, 0, 0, 0], ids[:, 2])


def test_prepared_photos_carry_their_crops(sdxl_pipe, photo_paths):
    """Each photo and its mirror image is cached with the time ids of its own crop."""
    prepared = data.prepare(sdxl_pipe, instance_paths=photo_paths, class_dir=None, instance_prompt="a sks dog",
                            class_prompt="a dog", resolution=64, flip=True, text_encoder_frozen=True)
    crops = [data.image_crop(p, 64) for p in photo_paths]
    assert prepared.instance.time_ids.tolist() == [c.time_ids() for c in crops] + \
        [c.time_ids(flipped=True) for c in crops]
    assert prepared.instance_pooled.shape == (1, sdxl_pipe.text_encoder_2.config.projection_dim)


def test_training_with_prior_preservation_moves_every_lora(trained):
    """A run with class images reports a prior loss, and the UNet and both text encoders' LoRA weights move."""
    assert trained.step == 4 and not trained.stopped and trained.grid.is_file()
    assert trained.prior_losses and all(loss > 0 for loss in trained.prior_losses)
    weights = load_file(str(trained.adapter_dir / lora.WEIGHT_NAME))
    for part in ("unet.", "text_encoder.", "text_encoder_2."):
        ups = [v for k, v in weights.items() if k.startswith(part) and ("lora_B" in k or ".up." in k)]
        assert ups and any(v.abs().sum() > 0 for v in ups), part


def test_diffusers_file_loads_in_a_fresh_pipeline(trained, tiny_sdxl_model):
    """StableDiffusionXLPipeline.load_lora_weights reads the diffusers file into the UNet and both text encoders."""
    pipe = _fresh(tiny_sdxl_model)
    before = _image(pipe)
    pipe.load_lora_weights(str(trained.adapter_dir), weight_name=lora.WEIGHT_NAME, adapter_name="rex")
    for module in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2):
        assert "rex" in module.peft_config
    assert np.abs(_image(pipe) - before).max() > 0


def test_kohya_file_loads_in_a_fresh_pipeline_like_the_diffusers_file(trained, tiny_sdxl_model):
    """The kohya copy, read by diffusers' kohya SDXL loader, gives the diffusers file's images (up to fp16)."""
    pipe = _fresh(tiny_sdxl_model)
    pipe.load_lora_weights(str(trained.adapter_dir), weight_name=lora.WEIGHT_NAME, adapter_name="rex")
    from_diffusers = _image(pipe)
    pipe = _fresh(tiny_sdxl_model)
    before = _image(pipe)
    pipe.load_lora_weights(str(trained.kohya_path), adapter_name="rex")
    from_kohya = _image(pipe)
    assert np.abs(from_kohya - from_diffusers).max() < 0.1 * np.abs(from_diffusers - before).max()


def test_kohya_keys_and_metadata_are_sd_scripts_sdxl(trained):
    """lora_unet_ (SGM block names), lora_te1_ and lora_te2_ keys, and SDXL base in the metadata."""
    with safe_open(str(trained.kohya_path), framework="pt") as f:
        keys, header = set(f.keys()), f.metadata()
    assert {k.split("_")[1] for k in keys} == {"unet", "te1", "te2"}
    assert "lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys  # 1 per level
    assert "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight" in keys
    assert not any("down_blocks" in k or "up_blocks" in k for k in keys)
    assert header["ss_base_model_version"] == "sdxl_base_v1-0" and header["ss_v2"] == "False"
    assert header["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert header["modelspec.resolution"] == "64x64" and header["ss_resolution"] == "64"


@pytest.mark.parametrize(("diffusers_name", "sgm_name"), [
    ("down_blocks_1_attentions_0", "input_blocks_4_1"),
    ("down_blocks_2_attentions_1", "input_blocks_8_1"),
    ("mid_block_attentions_0", "middle_block_1"),
    ("up_blocks_0_attentions_2", "output_blocks_2_1"),
    ("up_blocks_1_attentions_0", "output_blocks_3_1"),
])
def test_kohya_unet_keys_use_sdxl_base_s_block_numbers(diffusers_name, sgm_name):
    """With SDXL base's two layers per block, attention blocks get sd-scripts' input/middle/output numbers."""
    suffix = "_transformer_blocks_0_attn1_to_q.lora_down.weight"
    assert lora.sgm_unet_key(f"lora_unet_{diffusers_name}{suffix}", 2) == f"lora_unet_{sgm_name}{suffix}"


def test_stop_then_resume_equals_an_uninterrupted_run(sdxl_pipe, sdxl_cfg, photo_paths, sdxl_class_dir, tmp_path):
    """Stopped after the step-2 checkpoint and run again, SDXL training ends with the same weights as one run."""
    class StopAt2(train.Callbacks):
        def __init__(self):
            self.steps = []

        def on_checkpoint(self, checkpoint):
            self.steps.append(checkpoint.step)

        def should_stop(self):
            return 2 in self.steps

    straight = _run(sdxl_pipe, sdxl_cfg, photo_paths, sdxl_class_dir, tmp_path / "a")
    first = _run(sdxl_pipe, sdxl_cfg, photo_paths, sdxl_class_dir, tmp_path / "b", StopAt2())
    second = _run(sdxl_pipe, sdxl_cfg, photo_paths, sdxl_class_dir, tmp_path / "b")
    assert first.stopped and second.resumed_from == 2
    a = load_file(str(straight.adapter_dir / lora.WEIGHT_NAME))
    b = load_file(str(second.adapter_dir / lora.WEIGHT_NAME))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_two_subjects_at_once(tiny_sdxl_model, tmp_path):
    """The image generator loads two SDXL adapters (both text encoders included) and uses them together."""
    pipe = _load(tiny_sdxl_model)
    a, b = (random_adapter(pipe, tmp_path / name, seed, text_encoder=True) for name, seed in (("a", 1), ("b", 2)))
    gen = ImageGenerator(pipe)
    run = lambda adapters: np.asarray(gen.generate("a photo of sks dog", adapters, n=1, seed=0, steps=2,  # noqa: E731
                                                   resolution=64).images[0], dtype=float)
    only_a, both = run([("a", a)]), run([("a", a), ("b", b)])
    assert pipe.get_active_adapters() == ["a", "b"] and "b" in pipe.text_encoder_2.peft_config
    assert np.abs(only_a - both).max() > 0


def test_the_second_tokenizer_s_limit_is_checked_too(sdxl_pipe):
    """A prompt the second text encoder cannot read whole is refused, even when the first reads it."""
    sdxl_pipe.tokenizer_2.model_max_length = 8
    try:
        with pytest.raises(PromptTooLong):
            check_prompt_fits(sdxl_pipe, "a photo of sks dog on a red sofa in the sun")
    finally:
        sdxl_pipe.tokenizer_2.model_max_length = 77
