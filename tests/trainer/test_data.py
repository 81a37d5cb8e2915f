"""Training data: photo preparation, class images and their cache key, latents."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from trainer import data

KEY_ARGS = dict(model="m", prompt="a photo of a dog", resolution=512, steps=25, guidance=7.5, count=100,
                sampler="DPMSolverMultistepScheduler")


def test_load_image_center_crops_to_a_square(photo_paths):
    """The short side is scaled to the resolution and the long side cropped."""
    image = data.load_image(photo_paths[0], 64)
    assert image.size == (64, 64) and image.mode == "RGB"


def test_to_tensor_is_in_vae_range(photo_paths):
    """Pixels become [-1, 1] floats, channels first."""
    t = data.to_tensor([data.load_image(photo_paths[0], 32)])
    assert t.shape == (1, 3, 32, 32) and t.min() >= -1 and t.max() <= 1


@pytest.mark.parametrize(("field", "value"), [("model", "other"), ("prompt", "a photo of a cat"),
                                              ("resolution", 768), ("steps", 30), ("guidance", 5.0),
                                              ("count", 50), ("sampler", "PNDMScheduler")])
def test_class_cache_key_depends_on_every_input(field, value):
    """Changing any input of the recipe names a different class-image set."""
    assert data.class_cache_key(**KEY_ARGS) != data.class_cache_key(**{**KEY_ARGS, field: value})


def test_class_images_resume_after_interruption(pipe, tmp_path):
    """Images already in the partial folder are kept; the set is complete once renamed."""
    out = tmp_path / "set"
    calls = []
    with pytest.raises(InterruptedError):
        data.generate_class_images(pipe, out, prompt="a photo of a dog", count=3, resolution=64, steps=2,
                                   guidance=7.5, batch_size=2, should_stop=lambda: len(calls) > 0,
                                   progress=lambda done, total: calls.append(done))
    assert not out.exists() and len(list(out.with_name("set.partial").glob("*.png"))) == 2
    data.generate_class_images(pipe, out, prompt="a photo of a dog", count=3, resolution=64, steps=2,
                               guidance=7.5, batch_size=2, progress=lambda done, total: calls.append(done))
    assert calls == [2, 3] and len(data.class_image_paths(out)) == 3


def test_class_images_use_fixed_seeds(pipe, tmp_path):
    """The same recipe renders the same pixels, so a cached set equals a fresh one."""
    a = data.generate_class_images(pipe, tmp_path / "a", prompt="a dog", count=1, resolution=64, steps=2, guidance=7.5)
    b = data.generate_class_images(pipe, tmp_path / "b", prompt="a dog", count=1, resolution=64, steps=2, guidance=7.5)
    assert (a / "00000.png").read_bytes() == (b / "00000.png").read_bytes()


def test_prepare_encodes_photos_and_mirror_images_once(pipe, photo_paths):
    """Each photo and its mirror image become one latent distribution; frozen prompts are encoded."""
    prepared = data.prepare(pipe, instance_paths=photo_paths, class_dir=None, instance_prompt="a photo of sks dog",
                            class_prompt="a photo of a dog", resolution=64, flip=True, text_encoder_frozen=True)
    assert prepared.instance.mean.shape == (6, 4, 8, 8) and prepared.classes is None
    assert prepared.instance_emb.shape == (1, 77, 32)


def test_latent_pool_samples_match_reencoding(pipe, photo_paths):
    """Drawing from the cached distribution equals a fresh VAE encode's latent_dist.sample with the same noise."""
    images = data.to_tensor([data.load_image(photo_paths[0], 64)])
    pool = data.encode_images(pipe.vae, images, flip=False)
    g = torch.Generator().manual_seed(3)
    ours = pool.sample(1, g, scaling_factor=1.0)
    g = torch.Generator().manual_seed(3)
    torch.randint(1, (1,), generator=g)  # the pool's index draw
    with torch.no_grad():
        ref = pipe.vae.encode(images).latent_dist.sample(generator=g)
    torch.testing.assert_close(ours, ref)


def test_pool_round_trips_through_disk(tmp_path):
    """Cached latents saved beside class images load back unchanged."""
    pool = data.LatentPool(torch.randn(2, 4, 3, 3), torch.rand(2, 4, 3, 3))
    data.save_pool(pool, tmp_path / "p.safetensors")
    back = data.load_pool(tmp_path / "p.safetensors")
    for f in dataclasses.fields(pool):
        torch.testing.assert_close(getattr(back, f.name), getattr(pool, f.name))
