"""The evaluation metrics on inputs whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.eval import metrics


def test_identical_embeddings_score_one():
    """An image set compared with itself scores 1 when every row is the same direction."""
    a = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    assert metrics.dino_score(a, a[:1]) == pytest.approx(1.0)


def test_orthogonal_embeddings_score_zero():
    """Orthogonal embeddings have similarity 0."""
    assert metrics.clip_i_score(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])) == pytest.approx(0.0)


def test_mean_pairwise_cosine_averages_every_pair():
    """Two generated x two real: the mean of the four cosines (1, 0, 1/sqrt2, 1/sqrt2)."""
    gen = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    real = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    want = (1 + 0 + 2 / math.sqrt(2)) / 4
    assert metrics.mean_pairwise_cosine(gen, real) == pytest.approx(want)


def test_pres_is_the_same_arithmetic_as_dino():
    """PRES is DINO similarity of class samples to the real photos."""
    a, b = torch.randn(3, 8, generator=torch.Generator().manual_seed(0)), torch.randn(4, 8)
    assert metrics.pres_score(a, b) == pytest.approx(metrics.dino_score(a, b))


def test_clip_t_pairs_rows_not_all_pairs():
    """CLIP-T compares image i with prompt i only: matched rows give 1 even if other pairs are orthogonal."""
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert metrics.clip_t_score(img, img * 5) == pytest.approx(1.0)
    assert metrics.clip_t_score(img, img.flip(0)) == pytest.approx(0.0)


def test_clip_t_is_raw_cosine_not_scaled():
    """A 60-degree pair scores cos 60 = 0.5, not CLIPScore's 50."""
    assert metrics.clip_t_score(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, math.sqrt(3) / 2]])) == \
        pytest.approx(0.5)


def test_perceptual_distance_of_an_image_to_itself_is_zero():
    feats = [torch.randn(5, 4), torch.randn(5, 6)]
    assert float(metrics.perceptual_distance(feats, feats)) == pytest.approx(0.0, abs=1e-7)


def test_perceptual_distance_by_hand():
    """Layer 1: tokens opposite (distance 4) and equal (0) -> 2; layer 2: orthogonal (2) -> mean 2."""
    a = [torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 0.0]])]
    b = [torch.tensor([[-3.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0]])]
    assert float(metrics.perceptual_distance(a, b)) == pytest.approx(2.0)


def test_perceptual_distance_ignores_channel_scale():
    """Unit-normalised channels: scaling an image's features changes nothing."""
    a = [torch.randn(3, 4, generator=torch.Generator().manual_seed(1))]
    assert float(metrics.perceptual_distance(a, [a[0] * 7])) == pytest.approx(0.0, abs=1e-6)


def test_div_averages_unordered_pairs():
    """Three samples, two identical: pairs (0,1)=0, (0,2)=d, (1,2)=d, so DIV = 2d/3."""
    x, y = [torch.tensor([[1.0, 0.0]])], [torch.tensor([[0.0, 1.0]])]
    assert metrics.div_score([x, x, y]) == pytest.approx(2 * 2.0 / 3)


def test_div_needs_two_samples():
    with pytest.raises(ValueError):
        metrics.div_score([[torch.ones(1, 2)]])


def test_self_similarity_leaves_out_the_diagonal():
    """Two orthogonal rows: the only distinct pair scores 0 (the diagonal's ones are not counted)."""
    assert metrics.self_similarity(torch.eye(2)) == pytest.approx(0.0)
