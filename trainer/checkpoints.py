"""Training checkpoints: save one atomically, list the complete ones, resume from the newest.

Layout of one checkpoint, under `<out_dir>/checkpoints/step-000100/`:
    trainable.safetensors   the LoRA weights being trained
    optimizer.pt            optimizer and loss-scaler state
    rng.pt                  torch, CUDA and the noise generator's RNG state
    state.json              step, learning rate, optimizer class, resolved config, python and numpy RNG state
    adapter/                the same LoRA as a loadable diffusers adapter
    kohya.safetensors       the same weights in kohya format (bot/exports.py reads it)
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainer import lora
from trainer.atomic import atomic_dir
from trainer.config import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "step-"
CHECKPOINT_KOHYA = "kohya.safetensors"  # the checkpoint's kohya copy, beside adapter/ (bot/exports.py reads it)
# A checkpoint made under other values of these cannot continue this run: it starts afresh instead. The base
# model is compared by its weights' fingerprint when both runs know it (hosts of a fleet keep the same model at
# different paths), else by name.
RESUME_MUST_MATCH = ("rank", "alpha", "train_text_encoder", "resolution", "batch_size")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path  # the checkpoint folder
    adapter_dir: Path  # loadable diffusers adapter inside it
    grid: Path | None  # sample grid made at this step
    removed: tuple[Path, ...] = ()  # older checkpoint folders deleted to keep the newest K
    final: bool = False
    grid_nsfw: bool = False  # the grid shows a tile the safety checker flagged (kept: spoiler policy)
    grid_withheld: int = 0  # flagged tiles saved as plain grey tiles (block policy)
    grid_flagged: int = 0  # tiles the safety checker flagged, withheld or not


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a folder only gets its final name once fully written)."""
    root = out_dir / "checkpoints"
    return sorted(root.glob(f"{CHECKPOINT_PREFIX}[0-9]*")) if root.is_dir() else []


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:06d}"


def save(pipe, optimizer, scaler, generator, cfg: TrainConfig, out_dir: Path, step: int, meta: dict, *,
         lr: float, final: bool = False) -> Checkpoint:
    """Write the checkpoint at `step`, then delete all but the newest cfg.keep_checkpoints (no grid yet)."""
    from safetensors.torch import save_file

    final_dir = out_dir / "checkpoints" / checkpoint_name(step)
    saved_meta = {**meta, "steps_done": step}
    # Written whole under a temporary name, then renamed, so checkpoint_dirs never sees a partial one; a stop
    # right after a checkpoint at the same step replaces it.
    with atomic_dir(final_dir) as tmp:
        save_file(lora.trainable_state(pipe), str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()}, tmp / "optimizer.pt")
        rng = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        py_version, py_state, py_gauss = random.getstate()
        np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        state = {"step": step, "lr": lr, "optimizer": type(optimizer).__name__,
                 "config": json.loads(cfg.to_json()), "python_random": [py_version, list(py_state), py_gauss],
                 "numpy_random": [np_name, np_keys.tolist(), np_pos, np_has_gauss, np_gauss]}
        (tmp / "state.json").write_text(json.dumps(state))
        lora.save_adapter(pipe, tmp / "adapter", metadata=saved_meta)
        # Its own kohya copy, so an owner who keeps this checkpoint exports this step in either format.
        lora.save_kohya(pipe, tmp / CHECKPOINT_KOHYA, rank=cfg.rank, alpha=cfg.alpha, metadata=saved_meta)

    removed = tuple(checkpoint_dirs(out_dir)[:-cfg.keep_checkpoints])
    for old in removed:
        shutil.rmtree(old, ignore_errors=True)
    return Checkpoint(step, final_dir, final_dir / "adapter", None, removed, final)


def resume(pipe, optimizer, scaler, generator, cfg: TrainConfig, out_dir: Path) -> int:
    """Load the newest checkpoint into the adapters, optimizer and RNGs; return its step (0 if none)."""
    from safetensors.torch import load_file

    found = checkpoint_dirs(out_dir)
    if not found:
        return 0
    ckpt = found[-1]
    state = json.loads((ckpt / "state.json").read_text())
    saved = state["config"]
    model_key = "base_weights" if cfg.base_weights and saved.get("base_weights") else "base_model"
    for key in (model_key, *RESUME_MUST_MATCH):
        if saved.get(key) != getattr(cfg, key):
            log.warning("not resuming from %s: %s was %r, now %r", ckpt, key, saved.get(key), getattr(cfg, key))
            return 0
    lora.load_trainable_state(pipe, load_file(str(ckpt / "trainable.safetensors"), device=str(pipe.unet.device)))
    opt_state = torch.load(ckpt / "optimizer.pt", map_location=pipe.unet.device, weights_only=True)
    if state["optimizer"] == type(optimizer).__name__:
        optimizer.load_state_dict(opt_state["optimizer"])
    else:  # e.g. the out-of-memory retry switched to 8-bit AdamW: moments restart, weights do not
        log.warning("optimizer changed from %s to %s: its state starts afresh", state["optimizer"],
                    type(optimizer).__name__)
    scaler.load_state_dict(opt_state["scaler"])
    rng = torch.load(ckpt / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["generator"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    version, py_state, gauss = state["python_random"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, np_gauss = state["numpy_random"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, np_gauss))
    return int(state["step"])
