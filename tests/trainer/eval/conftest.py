"""Eval fixtures: tiny random DINO and CLIP models saved like downloaded ones, and a subject adapter folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def metric_models(tmp_path_factory) -> tuple[Path, Path]:
    """(DINO folder, CLIP folder) of tiny random-weight models in the transformers layout."""
    from trainer.eval.tiny_models import make_tiny_clip, make_tiny_dino

    root = tmp_path_factory.mktemp("metric-models")
    return make_tiny_dino(root / "dino"), make_tiny_clip(root / "clip")


@pytest.fixture(scope="session")
def embedders(metric_models):
    from trainer.eval.models import ClipEmbedder, DinoEmbedder

    return DinoEmbedder(str(metric_models[0])), ClipEmbedder(str(metric_models[1]))


@pytest.fixture(scope="session")
def papers_configs() -> dict[str, dict]:
    """{"DINO": config, "CLIP": config} as the paper's models have them, built by transformers (no weights)."""
    from transformers import CLIPConfig, ViTConfig

    from trainer.eval.identity import PAPER_MODELS

    sizes = {k: v for k, v in PAPER_MODELS["DINO"].architecture.items() if k != "model_type"}
    return {"DINO": ViTConfig(**sizes).to_dict(), "CLIP": CLIPConfig().to_dict()}  # CLIP's defaults are ViT-B/32


@pytest.fixture
def adapter_dir(pipe, tiny_model, photo_paths, tmp_path) -> Path:
    """An untrained subject adapter ('sks dog') saved with dreambot metadata, its photos beside it."""
    import shutil

    from trainer import lora

    out = tmp_path / "adapter"
    lora.add_train_adapters(pipe, rank=4, alpha=4.0, text_encoder=False)
    lora.save_adapter(pipe, out, metadata={"token": "sks", "class_noun": "dog", "base_model": str(tiny_model),
                                           "resolution": 64})
    lora.remove_train_adapters(pipe)
    (out / "photos").mkdir()
    for p in photo_paths:
        shutil.copy2(p, out / "photos" / p.name)
    return out
