"""The DreamBooth LoRA training loop, with prior preservation, checkpoints, resume and sample grids.

`train()` reads top to bottom: seed, build (adapters, optimizer, precomputed data), resume from
the newest checkpoint, then per step: learning rate, forward, loss, backward, clip, step, log,
save. It knows nothing of the queue: progress, checkpoints and cancellation go through a
`Callbacks` object, so the worker, the CLI and the tests drive the same code.

Layout under `out_dir` (a job's folder):
    config.json                       the resolved TrainConfig
    checkpoints/step-000100/          trainable.safetensors, optimizer.pt, rng.pt, state.json,
                                      adapter/pytorch_lora_weights.safetensors (loadable as is),
                                      kohya.safetensors (the same weights in kohya format)
    grids/step-000100.png             sample grid made at that checkpoint

Each grid's tiles pass the image safety checker (`check_tiles`, from trainer.safety) before the grid
is saved: under the guild's "block" policy a flagged tile is saved as a plain grey tile.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from storage.provenance import Marks, sha256_file
from trainer import data, lora
from trainer.atomic import atomic_dir, atomic_file
from trainer.config import TrainConfig
from trainer.errors import InputError, OutOfMemory
from trainer.generate import render, save_grid
from trainer.losses import add_noise, diffusion_target, lr_at, min_snr_weights, prior_preservation_loss
from trainer.models import Runtime
from trainer.safety import ScreenedTiles

TileChecker = Callable[[Sequence], ScreenedTiles]  # a grid's tiles in, the tiles to save out (trainer.safety)

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "step-"
CHECKPOINT_KOHYA = "kohya.safetensors"  # the checkpoint's kohya copy, beside adapter/ (bot/exports.py reads it)
LOG_EVERY_SECONDS = 5.0  # progress is reported this often (and at checkpoints); reading the loss syncs the GPU


@dataclass(frozen=True)
class Progress:
    step: int  # optimizer steps done
    total: int
    loss: float  # mean total loss since the last report
    instance_loss: float
    prior_loss: float
    lr: float
    seconds_per_step: float
    eta_seconds: float
    message: str = ""


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


class Callbacks:
    """What a training run reports to its driver. The default does nothing and never stops."""

    def on_progress(self, progress: Progress) -> None:
        pass

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        pass

    def on_message(self, text: str) -> None:
        pass

    def should_stop(self) -> bool:
        """Checked between steps: True checkpoints and returns (cancellation, SIGTERM)."""
        return False


@dataclass
class TrainResult:
    step: int  # steps done when it returned
    stopped: bool  # returned early because should_stop() said so
    resumed_from: int | None  # checkpoint step this run started from
    checkpoints: list[Checkpoint] = field(default_factory=list)
    adapter_dir: Path | None = None  # final diffusers adapter (None when stopped)
    kohya_path: Path | None = None
    grid: Path | None = None  # the last sample grid
    seconds: float = 0.0
    config: TrainConfig | None = None  # the config that ran (after an out-of-memory retry, the changed one)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def train(pipe, runtime: Runtime, cfg: TrainConfig, *, instance_paths: list[Path], class_dir: Path | None,
          out_dir: Path, export_dir: Path, kohya_path: Path, metadata: dict | None = None,
          callbacks: Callbacks | None = None, check_tiles: TileChecker | None = None,
          marks: Marks | None = None) -> TrainResult:
    """Train a LoRA on the photos; on CUDA out-of-memory, retry once with gradient checkpointing and 8-bit AdamW.

    `check_tiles` screens every sample grid's tiles before it is saved (the worker passes the safety
    checker and the guild's policy); None saves them unchecked, for runs whose grids nobody is shown.
    `marks` says in each grid's metadata that it is AI-made (storage.provenance), with the hash of the
    checkpoint's own adapter file.
    """
    args = dict(instance_paths=instance_paths, class_dir=class_dir, out_dir=out_dir, export_dir=export_dir,
                kohya_path=kohya_path, metadata=metadata or {}, callbacks=callbacks or Callbacks(),
                check_tiles=check_tiles, marks=marks)
    try:
        return _train(pipe, runtime, cfg, **args)
    except torch.cuda.OutOfMemoryError:
        if cfg.gradient_checkpointing and cfg.optimizer == "adamw8bit":
            raise _out_of_memory(cfg) from None
    # Outside the except block, so the traceback's frames (and their tensors) are already freed.
    free_memory()
    cfg = dataclasses.replace(cfg, gradient_checkpointing=True, optimizer="adamw8bit")
    args["callbacks"].on_message("Out of GPU memory: retrying with gradient checkpointing and 8-bit AdamW.")
    log.warning("CUDA out of memory; retrying with gradient checkpointing and 8-bit AdamW")
    try:
        return _train(pipe, runtime, cfg, **args)
    except torch.cuda.OutOfMemoryError:
        pass
    free_memory()
    raise _out_of_memory(cfg)


def _out_of_memory(cfg: TrainConfig) -> OutOfMemory:
    return OutOfMemory(f"Training ran out of GPU memory even with gradient checkpointing and 8-bit AdamW "
                       f"(resolution {cfg.resolution}, rank {cfg.rank}). Use a smaller preset or resolution, "
                       "or a GPU with more memory.")


def _train(pipe, runtime: Runtime, cfg: TrainConfig, *, instance_paths, class_dir, out_dir: Path,
           export_dir: Path, kohya_path: Path, metadata: dict, callbacks: Callbacks,
           check_tiles: TileChecker | None, marks: Marks | None) -> TrainResult:
    from diffusers import DDPMScheduler

    started = time.perf_counter()
    if not instance_paths:
        raise InputError("There are no photos to train on: add at least one photo of the subject.")
    if cfg.prior_preservation and class_dir is None:
        raise ValueError("prior preservation is on but no class-image folder was given")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(cfg.to_json())
    set_seed(cfg.seed)

    # Build: the noise schedule the base model was trained with, the data (encoded once), the adapters.
    noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    alphas_cumprod = noise_schedule.alphas_cumprod.to(runtime.device)
    prediction_type = noise_schedule.config.prediction_type
    n_timesteps = noise_schedule.config.num_train_timesteps
    train_data = data.prepare(
        pipe, instance_paths=instance_paths, class_dir=class_dir if cfg.prior_preservation else None,
        instance_prompt=cfg.instance_prompt, class_prompt=cfg.class_prompt, resolution=cfg.resolution,
        flip=cfg.flip, text_encoder_frozen=not cfg.train_text_encoder)
    params = lora.add_train_adapters(pipe, rank=cfg.rank, alpha=cfg.alpha, text_encoder=cfg.train_text_encoder)
    try:
        if cfg.gradient_checkpointing:
            pipe.unet.enable_gradient_checkpointing()
        # The compiled module shares the UNet's weights; sample grids keep using the plain one.
        unet_forward = torch.compile(pipe.unet) if cfg.compile_unet else pipe.unet
        optimizer = _optimizer(params, cfg, runtime)
        # fp16 base weights need loss scaling; bf16 and fp32 do not (the scaler is then a no-op)
        scaler = torch.amp.GradScaler(runtime.device, enabled=runtime.dtype_name == "float16")
        generator = torch.Generator(runtime.device).manual_seed(cfg.seed)
        start = _resume(pipe, optimizer, scaler, generator, cfg, out_dir)
        if start:
            callbacks.on_message(f"Resuming from the checkpoint at step {start} of {cfg.steps}.")
            log.info("resuming %s from step %d", out_dir, start)
        result = TrainResult(step=start, stopped=False, resumed_from=start or None, config=cfg)
        meta = {**_metadata(cfg, prediction_type), **metadata}

        b = cfg.batch_size
        n_class = b if train_data.classes is not None else 0
        sums, since, window_start = torch.zeros(3, device=runtime.device), 0, time.perf_counter()
        pipe.unet.train()
        for step in range(start, cfg.steps):
            if callbacks.should_stop():
                if step > (result.checkpoints[-1].step if result.checkpoints else start):
                    result.checkpoints.append(_checkpoint(pipe, optimizer, scaler, generator, cfg, out_dir, step,
                                                          meta, grid=False, lr=lr_at(step, cfg)))
                    callbacks.on_checkpoint(result.checkpoints[-1])
                result.stopped, result.step = True, step
                break

            # Learning rate for this step: a pure function of the step, so resuming needs no scheduler state.
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # Forward: one fused batch, instance examples first, class examples after.
            latents = train_data.instance.sample(b, generator, pipe.vae.config.scaling_factor)
            if n_class:
                latents = torch.cat([latents, train_data.classes.sample(n_class, generator,
                                                                        pipe.vae.config.scaling_factor)])
            noise = torch.randn(latents.shape, generator=generator, device=runtime.device)
            if cfg.noise_offset:
                noise = noise + cfg.noise_offset * torch.randn(
                    (*latents.shape[:2], 1, 1), generator=generator, device=runtime.device)
            timesteps = torch.randint(0, n_timesteps, (latents.shape[0],), generator=generator,
                                      device=runtime.device)
            noisy = add_noise(latents, noise, timesteps, alphas_cumprod)
            with torch.autocast(runtime.device, dtype=runtime.dtype, enabled=runtime.autocast):
                hidden = _prompt_states(pipe, train_data, b, n_class)
                pred = unet_forward(noisy.to(runtime.dtype), timesteps, hidden.to(runtime.dtype)).sample

            # Loss (pure function), backward, clip, step.
            target = diffusion_target(noise, latents, timesteps, prediction_type=prediction_type,
                                      alphas_cumprod=alphas_cumprod)
            weights = None if cfg.snr_gamma is None else min_snr_weights(
                timesteps, alphas_cumprod, gamma=cfg.snr_gamma, prediction_type=prediction_type)
            loss = prior_preservation_loss(pred, target, b, cfg.prior_loss_weight, weights)
            scaler.scale(loss.total).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)

            # Log: losses stay on the device and are read every few seconds, not every step.
            sums += torch.stack([loss.total.detach(), loss.instance, loss.prior])
            since += 1
            done = step + 1
            checkpoint_now = done % cfg.checkpoint_every == 0 or done == cfg.steps
            if checkpoint_now or time.perf_counter() - window_start >= LOG_EVERY_SECONDS:
                total, inst, prior = (sums / since).tolist()
                per_step = (time.perf_counter() - window_start) / since
                callbacks.on_progress(Progress(done, cfg.steps, total, inst, prior, lr, per_step,
                                               per_step * (cfg.steps - done)))
                sums.zero_()
                since, window_start = 0, time.perf_counter()

            # Save: an atomic checkpoint and a sample grid every checkpoint_every steps and at the end.
            if checkpoint_now:
                pipe.unet.eval()
                result.checkpoints.append(_checkpoint(pipe, optimizer, scaler, generator, cfg, out_dir, done,
                                                      meta, grid=True, lr=lr, final=done == cfg.steps,
                                                      check_tiles=check_tiles, marks=marks))
                pipe.unet.train()
                callbacks.on_checkpoint(result.checkpoints[-1])
                window_start = time.perf_counter()  # the grid's time is not training time
            result.step = done

        if not result.stopped:
            # Each written whole under a temporary name, then renamed: a crash never leaves a half-written
            # adapter that looks real.
            meta["steps_done"] = result.step
            with atomic_dir(export_dir) as tmp:
                lora.save_adapter(pipe, tmp, metadata=meta)
                (tmp / "config.json").write_text(cfg.to_json())
            with atomic_file(kohya_path) as tmp:
                lora.save_kohya(pipe, tmp, rank=cfg.rank, alpha=cfg.alpha, metadata=meta)
            result.adapter_dir, result.kohya_path = export_dir, kohya_path
        grids = [c.grid for c in result.checkpoints if c.grid]
        result.grid = grids[-1] if grids else None
        result.seconds = time.perf_counter() - started
        return result
    finally:
        pipe.unet.eval()
        if cfg.gradient_checkpointing:
            pipe.unet.disable_gradient_checkpointing()
        lora.remove_train_adapters(pipe)


def _prompt_states(pipe, train_data: data.TrainingData, n_instance: int, n_class: int) -> torch.Tensor:
    """Text-encoder states for the fused batch: cached when frozen, recomputed when its LoRA trains."""
    if train_data.instance_emb is not None:
        parts = [train_data.instance_emb.expand(n_instance, -1, -1)]
        if n_class:
            parts.append(train_data.class_emb.expand(n_class, -1, -1))
    else:
        ids = [train_data.instance_ids.expand(n_instance, -1)]
        if n_class:
            ids.append(train_data.class_ids.expand(n_class, -1))
        parts = [pipe.text_encoder(torch.cat(ids))[0]]
    return torch.cat(parts)


def _optimizer(params: list, cfg: TrainConfig, runtime: Runtime):
    if cfg.optimizer == "adamw8bit" and runtime.device == "cuda":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=cfg.learning_rate, betas=cfg.betas, eps=cfg.eps,
                                   weight_decay=cfg.weight_decay)
    if cfg.optimizer not in ("adamw", "adamw8bit"):
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
    # fused AdamW runs one kernel for all the LoRA tensors on CUDA
    return torch.optim.AdamW(params, lr=cfg.learning_rate, betas=cfg.betas, eps=cfg.eps,
                             weight_decay=cfg.weight_decay, fused=runtime.device == "cuda")


def _metadata(cfg: TrainConfig, prediction_type: str) -> dict:
    return {"base_model": cfg.base_model, "token": cfg.token, "class_noun": cfg.class_noun,
            "instance_prompt": cfg.instance_prompt, "preset": cfg.preset, "steps": cfg.steps,
            "learning_rate": cfg.learning_rate, "rank": cfg.rank, "alpha": cfg.alpha,
            "train_text_encoder": cfg.train_text_encoder, "resolution": cfg.resolution,
            "prediction_type": prediction_type, "format": "dreambot-lora/1"}


# --- checkpoints ---------------------------------------------------------------------------------

def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a folder only gets its final name once fully written)."""
    root = out_dir / "checkpoints"
    return sorted(root.glob(f"{CHECKPOINT_PREFIX}[0-9]*")) if root.is_dir() else []


def _checkpoint(pipe, optimizer, scaler, generator, cfg: TrainConfig, out_dir: Path, step: int, meta: dict, *,
                grid: bool, lr: float, final: bool = False, check_tiles: TileChecker | None = None,
                marks: Marks | None = None) -> Checkpoint:
    from safetensors.torch import save_file

    root = out_dir / "checkpoints"
    name = f"{CHECKPOINT_PREFIX}{step:06d}"
    final_dir = root / name
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
    grid_path, screened = None, ScreenedTiles([], False, 0)
    if grid:
        images = render(pipe, cfg.sample_prompts(), seeds=cfg.sample_seeds, steps=cfg.sample_steps,
                        guidance=cfg.guidance_scale, resolution=cfg.resolution)
        screened = check_tiles(images) if check_tiles is not None else ScreenedTiles(images, False, 0)
        if marks is not None:  # the grid was drawn with this checkpoint's adapter: its file's hash says which
            marks = dataclasses.replace(marks, lora_sha256=(sha256_file(final_dir / "adapter" / lora.WEIGHT_NAME),))
        grid_path = save_grid(screened.tiles, cols=len(cfg.sample_seeds), path=out_dir / "grids" / f"{name}.png",
                              marks=marks)
    return Checkpoint(step, final_dir, final_dir / "adapter", grid_path, removed, final, grid_nsfw=screened.nsfw,
                      grid_withheld=screened.withheld, grid_flagged=screened.flagged)


def _resume(pipe, optimizer, scaler, generator, cfg: TrainConfig, out_dir: Path) -> int:
    """Load the newest checkpoint into the adapters, optimizer and RNGs; return its step (0 if none)."""
    from safetensors.torch import load_file

    found = checkpoint_dirs(out_dir)
    if not found:
        return 0
    ckpt = found[-1]
    state = json.loads((ckpt / "state.json").read_text())
    saved = state["config"]
    for key in ("base_model", "rank", "alpha", "train_text_encoder", "resolution", "batch_size"):
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
