"""Whether a metric model is the paper's: its name, its architecture and whether its weights were ever trained."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import ViTConfig, ViTModel

from trainer.eval import identity
from trainer.eval.identity import PAPER_MODELS, claimed_name, fresh_init, identify
from trainer.eval.models import DinoEmbedder

DINO_ID, CLIP_ID = PAPER_MODELS["DINO"].hub_id, PAPER_MODELS["CLIP"].hub_id


def _one_training_step(model: torch.nn.Module) -> torch.nn.Module:
    """One SGD step on a random batch: what any training does to the LayerNorms."""
    size = model.config.image_size
    loss = model(pixel_values=torch.randn(1, 3, size, size)).last_hidden_state.pow(2).mean()
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    return model


@pytest.mark.parametrize(("source", "saved", "want"), [
    ("facebook/dino-vits16", None, "facebook/dino-vits16"),
    ("{tmp}/hub/models--facebook--dino-vits16/snapshots/0a1b2c", None, "facebook/dino-vits16"),
    ("{tmp}/copy", "openai/clip-vit-base-patch32", "openai/clip-vit-base-patch32"),
    ("{tmp}/copy", "/home/x/.cache/huggingface/hub/models--openai--clip-vit-base-patch32/snapshots/3d",
     "openai/clip-vit-base-patch32"),
    ("{tmp}/copy", "/home/x/my-clip", None),
    ("{tmp}/copy", None, None),
])
def test_claimed_name_reads_hub_id_cache_folder_or_recorded_name(tmp_path, source, saved, want):
    """A hub id names itself, a hub cache folder names its repository, else the recorded name; else nothing."""
    source = source.format(tmp=tmp_path)
    if source.startswith(str(tmp_path)):
        (tmp_path / source).mkdir(parents=True)
    assert claimed_name(source, saved) == want


@pytest.mark.parametrize(("role", "hub_id"), [("DINO", DINO_ID), ("CLIP", CLIP_ID)])
def test_papers_name_architecture_and_trained_weights_are_the_papers(papers_configs, role, hub_id):
    """The paper's hub id with the paper's architecture and trained weights counts as the paper's model."""
    found = identify(role, hub_id, name=hub_id, config=papers_configs[role], untrained=False)
    assert found.papers and found.why is None


@pytest.mark.parametrize("role", ["DINO", "CLIP"])
def test_tiny_stand_in_is_not_the_papers(embedders, role):
    """The tests' tiny random models: no name, another architecture and untrained weights, each said."""
    found = embedders[0 if role == "DINO" else 1].identity
    assert not found.papers and found.name is None
    assert all(part in found.why for part in ("does not say which model", "architecture", "random weights"))


def test_stand_in_claiming_the_papers_name_is_caught_by_its_architecture(metric_models, tmp_path):
    """A tiny random DINO placed where the hub cache keeps facebook/dino-vits16 still is not the paper's."""
    fake = tmp_path / "hub" / "models--facebook--dino-vits16" / "snapshots" / "0a1b2c"
    shutil.copytree(metric_models[0], fake)
    found = DinoEmbedder(str(fake)).identity
    assert found.name == DINO_ID and not found.papers
    assert "hidden_size 32, not 384" in found.why and "random weights" in found.why


def test_other_hub_model_is_not_the_papers():
    """Another checkpoint (DINOv2) is named in the reason, with the paper's id beside it."""
    config = {"model_type": "dinov2", "hidden_size": 384, "num_hidden_layers": 12}
    found = identify("DINO", "facebook/dinov2-small", name="facebook/dinov2-small", config=config, untrained=False)
    assert not found.papers and "facebook/dinov2-small, not facebook/dino-vits16" in found.why


def test_untrained_model_of_the_papers_shape_and_name_is_not_the_papers(papers_configs):
    """Full-size random weights under the paper's name are caught by their untouched LayerNorms."""
    found = identify("CLIP", CLIP_ID, name=CLIP_ID, config=papers_configs["CLIP"], untrained=True)
    assert not found.papers and "random weights" in found.why


def test_fresh_init_until_one_training_step():
    """A new model is a fresh initialisation; after one training step it no longer is."""
    torch.manual_seed(0)
    model = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                               image_size=32, patch_size=8), add_pooling_layer=False)
    assert fresh_init(model)
    assert not fresh_init(_one_training_step(model))


def test_trained_papers_architecture_in_the_papers_cache_folder_counts(tmp_path):
    """What the rule cannot tell: trained weights of ViT-S/16's shape in facebook/dino-vits16's cache folder pass
    (a hash of the real weights would be needed), here one training step from random."""
    torch.manual_seed(0)
    sizes = {k: v for k, v in PAPER_MODELS["DINO"].architecture.items() if k != "model_type"}
    model = _one_training_step(ViTModel(ViTConfig(**sizes), add_pooling_layer=False))
    folder = tmp_path / "hub" / "models--facebook--dino-vits16" / "snapshots" / "0a1b2c"
    model.save_pretrained(folder)
    found = identity.of_loaded("DINO", str(folder), ViTModel.from_pretrained(folder, add_pooling_layer=False))
    assert found.papers and found.name == DINO_ID
