"""The metric models: DINO (subject fidelity, PRES, DIV) and CLIP (CLIP-I, CLIP-T), by hub id or local folder.

Like the base model, each is read from the local Hugging Face cache or a folder, never downloaded
here. DINO is any transformers ViT-style backbone with a [CLS] token first (the paper's
`facebook/dino-vits16`, or DINOv2); CLIP is a `CLIPModel` with its processor and tokenizer (the
paper's ViT-B/32 is `openai/clip-vit-base-patch32`). Images go through each model's own
saved preprocessing (resize, crop, normalise). Each knows whether it is the paper's model
(`identity`, trainer/eval/identity.py), so the report can say when its figures are not comparable.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image

from trainer.errors import ModelNotFound
from trainer.eval import identity

log = logging.getLogger(__name__)

BATCH = 16


def _load(source: str, what: str, loader):
    path = Path(source).expanduser()
    try:
        return loader(str(path) if path.exists() else source)
    except OSError as exc:
        raise ModelNotFound(
            f"could not load the {what} model {source!r} without the network ({exc.__class__.__name__}). "
            f"Download it once (for example `hf download {source}`) or pass a local folder "
            f"(--{what.lower()}-model).") from exc


class DinoEmbedder:
    """[CLS] embeddings and per-layer token maps of a DINO ViT."""

    def __init__(self, source: str, device: str = "cpu"):
        from transformers import AutoImageProcessor, AutoModel

        self.processor = _load(source, "DINO", lambda s: AutoImageProcessor.from_pretrained(s, local_files_only=True))
        self.model = _load(source, "DINO", lambda s: AutoModel.from_pretrained(s, local_files_only=True))
        self.model.to(device).eval().requires_grad_(False)
        self.identity = identity.of_loaded("DINO", source, self.model)
        self.device = device

    @torch.no_grad()
    def _forward(self, images: list[Image.Image]):
        for start in range(0, len(images), BATCH):
            batch = self.processor(images=[im.convert("RGB") for im in images[start:start + BATCH]],
                                   return_tensors="pt")
            yield self.model(pixel_values=batch["pixel_values"].to(self.device), output_hidden_states=True)

    def embed(self, images: list[Image.Image]) -> torch.Tensor:
        """[N, D] [CLS] embeddings, as the paper's DINO metric uses."""
        return torch.cat([out.last_hidden_state[:, 0].float().cpu() for out in self._forward(images)])

    def token_maps(self, images: list[Image.Image]) -> list[list[torch.Tensor]]:
        """Per image, per transformer layer, its patch tokens [T, C] (the [CLS] token left out), for DIV."""
        maps = []
        for out in self._forward(images):
            layers = [h[:, 1:].float().cpu() for h in out.hidden_states[1:]]
            maps += [[layer[i] for layer in layers] for i in range(layers[0].shape[0])]
        return maps


class ClipEmbedder:
    """CLIP image and text embeddings (the projected ones, as CLIP compares them)."""

    def __init__(self, source: str, device: str = "cpu"):
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self.processor = _load(source, "CLIP", lambda s: AutoImageProcessor.from_pretrained(s, local_files_only=True))
        self.tokenizer = _load(source, "CLIP", lambda s: AutoTokenizer.from_pretrained(s, local_files_only=True))
        self.model = _load(source, "CLIP", lambda s: CLIPModel.from_pretrained(s, local_files_only=True))
        self.model.to(device).eval().requires_grad_(False)
        self.identity = identity.of_loaded("CLIP", source, self.model)
        self.device = device

    @staticmethod
    def _tensor(out) -> torch.Tensor:
        # transformers 5 returns a model output whose pooler_output is the projected embedding
        return (out if isinstance(out, torch.Tensor) else out.pooler_output).float().cpu()

    @torch.no_grad()
    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        chunks = []
        for start in range(0, len(images), BATCH):
            batch = self.processor(images=[im.convert("RGB") for im in images[start:start + BATCH]],
                                   return_tensors="pt")
            chunks.append(self._tensor(self.model.get_image_features(pixel_values=batch["pixel_values"].to(self.device))))
        return torch.cat(chunks)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        return self._tensor(self.model.get_text_features(input_ids=batch["input_ids"],
                                                         attention_mask=batch["attention_mask"]))
