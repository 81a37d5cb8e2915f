"""The DreamBooth paper's metrics, as pure functions of embeddings and feature maps.

    DINO    mean cosine similarity between DINO ViT-S/16 [CLS] embeddings of generated images and
            of the real photos, over every (generated, real) pair: subject fidelity.
    CLIP-I  the same with CLIP image embeddings.
    CLIP-T  mean cosine similarity between each image's CLIP image embedding and its prompt's
            CLIP text embedding. Raw cosine, as the paper reports it (0.305), not the CLIPScore
            convention of 100 * max(cos, 0).
    PRES    DINO similarity of samples of the class prompt (no identifier) to the real photos:
            how far the class collapsed onto the subject (paper: 0.493 with prior preservation,
            0.664 without).
    DIV     mean perceptual distance between every pair of samples of one prompt. The paper uses
            LPIPS, whose learned layer weights cannot be downloaded here, so this is LPIPS's
            formula with unit weights (the LPIPS paper's "baseline" variant, lin=False) over the
            DINO ViT's token maps: per layer, unit-normalise each token's channels, take the
            squared distance, average over tokens, then average over layers. 0 for identical
            images, at most 4. It ranks diversity the same way but its scale is not LPIPS's.
"""

from __future__ import annotations

import itertools

import torch


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N, M] cosine similarities between the rows of a [N, D] and b [M, D]."""
    a = torch.nn.functional.normalize(a.float(), dim=-1)
    b = torch.nn.functional.normalize(b.float(), dim=-1)
    return a @ b.T


def mean_pairwise_cosine(generated: torch.Tensor, real: torch.Tensor) -> float:
    """Mean cosine over every (generated, real) pair: DINO and CLIP-I, and PRES on class samples."""
    return float(cosine_matrix(generated, real).mean())


def dino_score(generated: torch.Tensor, real: torch.Tensor) -> float:
    return mean_pairwise_cosine(generated, real)


def clip_i_score(generated: torch.Tensor, real: torch.Tensor) -> float:
    return mean_pairwise_cosine(generated, real)


def pres_score(class_samples: torch.Tensor, real: torch.Tensor) -> float:
    return mean_pairwise_cosine(class_samples, real)


def clip_t_score(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> float:
    """Mean cosine between image i and its own prompt i (rows paired, not all pairs)."""
    a = torch.nn.functional.normalize(image_embeddings.float(), dim=-1)
    b = torch.nn.functional.normalize(text_embeddings.float(), dim=-1)
    return float((a * b).sum(-1).mean())


def perceptual_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """LPIPS with unit weights between two images' feature maps, one [T, C] (tokens x channels) per layer."""
    if len(a) != len(b) or not a:
        raise ValueError("both images need the same, non-empty list of layers")
    per_layer = []
    for fa, fb in zip(a, b, strict=True):
        fa = torch.nn.functional.normalize(fa.float(), dim=-1)
        fb = torch.nn.functional.normalize(fb.float(), dim=-1)
        per_layer.append((fa - fb).pow(2).sum(-1).mean())
    return torch.stack(per_layer).mean()


def div_score(features: list[list[torch.Tensor]]) -> float:
    """Mean perceptual distance over every unordered pair of samples of one prompt (needs two or more)."""
    if len(features) < 2:
        raise ValueError("diversity needs at least two samples of the prompt")
    pairs = [perceptual_distance(a, b) for a, b in itertools.combinations(features, 2)]
    return float(torch.stack(pairs).mean())


def self_similarity(embeddings: torch.Tensor) -> float:
    """Mean cosine over every pair of distinct rows: the paper's "real images" reference (DINO 0.774)."""
    n = embeddings.shape[0]
    if n < 2:
        raise ValueError("self-similarity needs at least two images")
    sims = cosine_matrix(embeddings, embeddings)
    return float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))
