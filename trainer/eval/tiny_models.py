"""Tiny random-weight DINO (ViT) and CLIP models in the transformers layout, for tests and offline demos.

They load through exactly the code that loads `facebook/dino-vits16` and
`openai/clip-vit-base-patch32` (folders with config, weights, preprocessor and, for CLIP, the real
CLIP tokenizer), so the evaluation runs end to end without downloads; their numbers mean nothing.
"""

from __future__ import annotations

from pathlib import Path

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # DINO's preprocessing
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IMAGE_SIZE = 32
PATCH = 8


def make_tiny_dino(out_dir: str | Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    out = Path(out_dir)
    torch.manual_seed(seed)
    model = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                               image_size=IMAGE_SIZE, patch_size=PATCH), add_pooling_layer=False)
    model.save_pretrained(out)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=IMAGENET_MEAN,
                      image_std=IMAGENET_STD).save_pretrained(out)
    return out


def make_tiny_clip(out_dir: str | Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from trainer.clip_tokenizer import CLIP_VOCAB_SIZE, MAX_TOKENS, write_clip_tokenizer

    out = Path(out_dir)
    torch.manual_seed(seed)
    text = dict(vocab_size=CLIP_VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                num_hidden_layers=2, max_position_embeddings=MAX_TOKENS, bos_token_id=49406, eos_token_id=49407,
                pad_token_id=49407)
    vision = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                  image_size=IMAGE_SIZE, patch_size=PATCH)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                       image_mean=CLIP_MEAN, image_std=CLIP_STD).save_pretrained(out)
    write_clip_tokenizer(out)
    return out
