"""Training data: photo preparation, class images and their cache key, latents."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from trainer import data

KEY_ARGS = dict(model="m", prompt="a photo of a dog", resolution=512, steps=25, guidance=7.5, count=100,
                sampler="DPMSolverMultistepScheduler")


def test_load_image_center_crops_to_a_square(photo_paths):
    """The short side is scaled to the resolution and the long side cropped."""
    image = data.load_image(photo_paths[0], 64)
    assert image.size == (64, 64) and image.mode == "RGB"


@pytest.fixture
def wide_photo(tmp_path):
    """A 200 x 50 photo whose red channel is its column: a view's mean red says where along the photo it sits."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (50, 200, 3), dtype=np.uint8)
    pixels[..., 0] = np.linspace(0, 255, 200).round().astype(np.uint8)
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    return path


def test_views_of_a_wide_photo_show_different_parts_of_it(wide_photo):
    """The first view is load_image's centre crop; the random ones reach past it on both sides of the long side."""
    views = data.photo_views(wide_photo, 32, count=6, rng=np.random.default_rng(0))
    assert np.array_equal(np.asarray(views[0][0]), np.asarray(data.load_image(wide_photo, 32)))
    assert all(image.size == (32, 32) for image, _ in views)
    red = [np.asarray(image)[..., 0].mean() for image, _ in views]
    assert min(red[1:]) < red[0] - 30 and max(red[1:]) > red[0] + 30  # columns well left and right of the centre


def test_random_views_scale_the_short_side_up_to_a_quarter_more():
    """Each random view resizes the short side to between 1 and 1.25 times the resolution, the aspect kept."""
    views = data.crop_views(200, 50, 32, count=20, rng=np.random.default_rng(1))
    for crop in views[1:]:
        h, w = crop.resized_size
        assert 32 <= h <= 40 and w == pytest.approx(4 * h, abs=2)
        assert 0 <= crop.top <= h - 32 and 0 <= crop.left <= w - 32
    assert len({c.resized_size for c in views}) > 5


def test_views_are_deterministic_for_a_seed(wide_photo):
    """The same seed cuts the same views, pixel for pixel; another seed cuts others."""
    def cut(seed):
        return data.photo_views(wide_photo, 32, count=4, rng=np.random.default_rng(seed))

    a, b, c = cut(7), cut(7), cut(8)
    assert [crop for _, crop in a] == [crop for _, crop in b] != [crop for _, crop in c]
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for (x, _), (y, _) in zip(a, b, strict=True))


def test_each_view_s_time_ids_are_its_own_crop(wide_photo):
    """A view's time ids are the photo's size, the view's top-left in its resized photo and the target size; its
    mirror image's crop starts as far from the right edge."""
    with Image.open(wide_photo) as im:
        photo = im.convert("RGB")
    for image, crop in data.photo_views(wide_photo, 32, count=5, rng=np.random.default_rng(2)):
        resized = np.asarray(photo.resize(crop.resized_size[::-1], Image.Resampling.LANCZOS, reducing_gap=3.0))
        assert np.array_equal(np.asarray(image), resized[crop.top:crop.top + 32, crop.left:crop.left + 32])
        assert crop.time_ids() == [50, 200, crop.top, crop.left, 32, 32]
        left = crop.time_ids(flipped=True)[3]
        assert np.array_equal(resized[:, ::-1][crop.top:crop.top + 32, left:left + 32], np.asarray(image)[:, ::-1])


def test_one_view_per_photo_reproduces_the_centre_crop_pool(pipe, photo_paths):
    """crops_per_photo 1 caches exactly what was cached before views: each centre crop, then its mirror image."""
    prepared = data.prepare(pipe, instance_paths=photo_paths, class_dir=None, instance_prompt="a photo of sks dog",
                            class_prompt="a photo of a dog", resolution=64, flip=True, text_encoder_frozen=True,
                            crops_per_photo=1, seed=5)
    images = data.to_tensor([data.load_image(p, 64) for p in photo_paths])
    with torch.no_grad():
        dist = pipe.vae.encode(torch.cat([images, images.flip(-1)])).latent_dist
    assert torch.equal(prepared.instance.mean, dist.mean) and torch.equal(prepared.instance.std, dist.std)
    assert torch.equal(prepared.instance.time_ids, data.time_ids([data.image_crop(p, 64) for p in photo_paths],
                                                                 flip=True))


def test_prepare_caches_every_view_of_every_photo_equally(pipe, photo_paths):
    """With 3 views and flips each photo owns 6 pool rows, its views' crops (from the seed) then their mirrors,
    so a uniform draw picks each photo equally often."""
    prepared = data.prepare(pipe, instance_paths=photo_paths, class_dir=None, instance_prompt="a photo of sks dog",
                            class_prompt="a photo of a dog", resolution=64, flip=True, text_encoder_frozen=True,
                            crops_per_photo=3, seed=5)
    rng = np.random.default_rng(5)
    crops = []
    for path in photo_paths:
        with Image.open(path) as im:
            crops += data.crop_views(im.width, im.height, 64, count=3, rng=rng)
    ids = prepared.instance.time_ids
    assert prepared.instance.mean.shape == (18, 4, 8, 8)
    assert torch.equal(ids, data.time_ids(crops, flip=True))
    sizes = [tuple(row[:2]) for row in ids.tolist()]  # the three photos differ in size
    assert sorted(sizes.count(size) for size in set(sizes)) == [6, 6, 6]


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


def test_a_worker_whose_class_set_another_worker_finished_takes_that_one(pipe, tmp_path):
    """Two workers on one data dir make the same set: when the other one finishes first and moves the folder away
    mid-run, this one returns the finished set instead of failing the job."""
    out = tmp_path / "set"
    partial = out.with_name("set.partial")

    def the_other_worker_finishes(done, total):
        if done == 2:
            data.generate_class_images(pipe, tmp_path / "theirs", prompt="a dog", count=3, resolution=64, steps=2,
                                       guidance=7.5)
            shutil.rmtree(partial)
            (tmp_path / "theirs").rename(out)
    got = data.generate_class_images(pipe, out, prompt="a dog", count=3, resolution=64, steps=2, guidance=7.5,
                                     batch_size=2, progress=the_other_worker_finishes)
    assert got == out and len(data.class_image_paths(out)) == 3 and not partial.exists()


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


def test_fresh_latents_have_the_layout_of_loaded_ones(pipe, photo_paths):
    """Encoded pools are contiguous, as pools read back from disk are, so a resumed job rounds as its first run did."""
    pool = data.encode_images(pipe.vae, data.to_tensor([data.load_image(photo_paths[0], 64)]), flip=True)
    assert pool.mean.is_contiguous() and pool.std.is_contiguous()


def test_pool_round_trips_through_disk(tmp_path):
    """Cached latents saved beside class images load back unchanged."""
    pool = data.LatentPool(torch.randn(2, 4, 3, 3), torch.rand(2, 4, 3, 3))
    data.save_pool(pool, tmp_path / "p.safetensors")
    back = data.load_pool(tmp_path / "p.safetensors")
    for f in dataclasses.fields(pool):
        torch.testing.assert_close(getattr(back, f.name), getattr(pool, f.name))
