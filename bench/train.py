"""Benchmark the trainer: seconds per step against a plain loop, memory, class images, generation.

    python -m bench.train                # tiny model on this machine's device (CPU here), ~1 minute
    python -m bench.train --full         # SD 1.5 architecture, random weights, 512 px, on CUDA
    python -m bench.train --family sdxl  # the tiny SDXL model (CPU here): checks the SDXL path runs
    python -m bench.train --full --family sdxl   # SDXL base architecture, random weights, 1024 px, on CUDA

The plain loop is what diffusers' reference script does each step: encode the batch's pixels
through the VAE and the prompts through the text encoder, then the UNet, and read the loss for
the progress bar. Ours encodes once, runs the UNet alone and reads the loss every few seconds.
Both run in the same process on the same model, each timed over a window of steps after 3
warm-up ones, and the ratio is printed; the plain loop is also timed without its per-step loss
read, to show what that sync alone costs. With --compile (always with --full) our loop is timed
again with compile_unet (torch.compile; its compiling steps are left out). With --full it also
measures peak memory with 8-bit AdamW + gradient checkpointing and the UNet's achieved TFLOP/s
(1.73 TFLOP fwd+bwd per 512 px sample with frozen base weights) as a fraction of the card's dense
bf16 peak. Prints a table last and writes JSON (default bench/out/train.json).

With --family sdxl there is no plain-loop comparison: it times our loop under the plan trainer.memory
chooses for the free memory and under the leanest plan (batch 1, checkpointing, 8-bit AdamW), and
prints each plan's measured peak beside trainer.memory's estimate, so the estimates can be checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

UNET_TFLOP_PER_SAMPLE_512 = 1.73  # forward + backward (activations only: base weights are frozen)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def peak_memory_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (KiB on Linux)


def reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


FULL = {"sd1": ("sd15", 512, "SD 1.5 architecture, random weights"),
        "sdxl": ("sdxl", 1024, "SDXL base architecture, random weights")}  # --family: (architecture, px, label)


def build(args, workdir: Path):
    """(pipe, runtime, photos): the tiny model through the worker's loader, or the full family built in memory."""
    import skimage.data
    from PIL import Image

    from trainer import models
    from trainer.tiny_model import build_random_pipeline, make_tiny_model

    runtime = models.pick_runtime("cuda" if args.full else args.device, "bf16")
    if args.full:
        if runtime.device != "cuda":
            sys.exit("--full needs a CUDA device")
        pipe = models.prepare_pipeline(build_random_pipeline(FULL[args.family][0], seed=0), runtime)
    else:
        pipe = models.load_pipeline(str(make_tiny_model(workdir / "tiny", arch=args.family)), runtime)
    photos = []
    for name in ("chelsea", "astronaut", "coffee"):
        path = workdir / f"{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).save(path)
        photos.append(path)
    return pipe, runtime, photos


class StepClock:
    """train.Callbacks that times a window of steps, as training really runs.

    The trainer reads its loss from the GPU only every few seconds, so the CPU queues the next
    steps while the GPU works. Timing each step would need a sync per step and hide that; instead
    the clock syncs once when step `skip` starts (should_stop is asked before each step) and once
    when the last step is done (its progress report, which comes before the final checkpoint).
    """

    def __init__(self, device: str, skip: int = 3):
        self.device, self.skip = device, skip
        self.calls = 0
        self.start = self.end = None
        self.timed_steps = 0

    def on_progress(self, progress):
        if progress.step == progress.total:
            sync(self.device)
            self.end = time.perf_counter()
            self.timed_steps = progress.total - self.skip

    def on_checkpoint(self, checkpoint):
        pass

    def on_message(self, text):
        pass

    def should_stop(self):
        if self.calls == self.skip:
            sync(self.device)
            self.start = time.perf_counter()
        self.calls += 1
        return False

    def seconds_per_step(self) -> float:
        if self.start is None or self.end is None:
            return float("nan")
        return (self.end - self.start) / self.timed_steps


def ours(pipe, runtime, cfg, photos, class_dir, workdir: Path, name: str, skip: int = 3) -> dict:
    from trainer import train

    clock = StepClock(runtime.device, skip)
    reset_peak(runtime.device)
    out = workdir / name
    train.train(pipe, runtime, cfg, instance_paths=photos, class_dir=class_dir, out_dir=out,
                export_dir=out / "adapter", kohya_path=out / "kohya.safetensors", callbacks=clock)
    return {"seconds_per_step": clock.seconds_per_step(), "peak_mb": peak_memory_mb(runtime.device),
            "adapter": str(out / "adapter")}


def plain_loop(pipe, runtime, cfg, photos, class_dir, steps: int, *, log_every_step: bool = True,
               skip: int = 3) -> dict:
    """diffusers' reference loop: VAE-encode pixels and text-encode prompts every step, then the UNet.

    Like the reference it reads the loss every step for its progress bar (`loss.detach().item()`),
    which waits for the GPU; `log_every_step=False` drops that, to show what the sync alone costs.
    """
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    from trainer import data, lora

    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    device, b = runtime.device, cfg.batch_size
    inst = data.to_tensor([data.load_image(p, cfg.resolution) for p in photos])
    cls = data.to_tensor([data.load_image(p, cfg.resolution) for p in data.class_image_paths(class_dir)])
    ids = torch.cat([data.token_ids(pipe.tokenizer, cfg.instance_prompt).expand(b, -1),
                     data.token_ids(pipe.tokenizer, cfg.class_prompt).expand(b, -1)]).to(device)
    params = lora.add_train_adapters(pipe, rank=cfg.rank, alpha=cfg.alpha, text_encoder=False)
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, fused=device == "cuda")
    g = torch.Generator().manual_seed(0)
    reset_peak(device)
    try:
        pipe.unet.train()
        for step in range(steps):
            if step == skip:
                sync(device)
                start = time.perf_counter()
            pixels = torch.cat([inst[torch.randint(len(inst), (b,), generator=g)],
                                cls[torch.randint(len(cls), (b,), generator=g)]]).to(device, runtime.dtype)
            with torch.autocast(device, dtype=runtime.dtype, enabled=runtime.autocast):
                with torch.no_grad():
                    latents = pipe.vae.encode(pixels).latent_dist.sample() * pipe.vae.config.scaling_factor
                    hidden = pipe.text_encoder(ids)[0]
                noise = torch.randn_like(latents)
                t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), device=device)
                pred = pipe.unet(sched.add_noise(latents, noise, t), t, hidden).sample
            inst_loss = F.mse_loss(pred[:b].float(), noise[:b].float())
            prior_loss = F.mse_loss(pred[b:].float(), noise[b:].float())
            (inst_loss + cfg.prior_loss_weight * prior_loss).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if log_every_step:
                (inst_loss + prior_loss).item()  # the reference logs the loss every step
        sync(device)
        seconds = (time.perf_counter() - start) / (steps - skip)
    finally:
        pipe.unet.eval()
        lora.remove_train_adapters(pipe)
    return {"seconds_per_step": seconds, "peak_mb": peak_memory_mb(device)}


def compare_loops(args, pipe, runtime, cfg, photos, class_dir, workdir: Path, steps: int, result: dict,
                  rows: list) -> dict:
    """SD 1.x: our loop against the plain one (and, with --full, compiled and lean); fills result and rows."""
    device = runtime.device
    mine = ours(pipe, runtime, cfg, photos, class_dir, workdir, "ours")
    base = plain_loop(pipe, runtime, cfg, photos, class_dir, steps)
    unsynced = plain_loop(pipe, runtime, cfg, photos, class_dir, steps, log_every_step=False)
    result.update(ours=mine, plain=base, plain_no_step_sync=unsynced,
                  speedup=base["seconds_per_step"] / mine["seconds_per_step"],
                  speedup_vs_no_step_sync=unsynced["seconds_per_step"] / mine["seconds_per_step"])
    mem = "peak GPU memory" if device == "cuda" else "process peak RSS"
    rows.append(("train step, dreambot", f"{mine['seconds_per_step'] * 1000:.1f} ms ({mem} {mine['peak_mb']:.0f} MiB)"))
    rows.append(("train step, plain loop", f"{base['seconds_per_step'] * 1000:.1f} ms ({mem} {base['peak_mb']:.0f} MiB)"))
    rows.append(("train step, plain loop, no per-step loss read",
                 f"{unsynced['seconds_per_step'] * 1000:.1f} ms ({mem} {unsynced['peak_mb']:.0f} MiB)"))
    rows.append(("speed-up", f"{result['speedup']:.2f}x (plain / dreambot seconds per step); "
                             f"{result['speedup_vs_no_step_sync']:.2f}x against the plain loop without its "
                             "per-step loss read"))

    if args.full or args.compile:
        # Compiling takes the first steps (excluded from the timing with the warm-up ones): time more steps.
        compiled_cfg = dataclasses.replace(cfg, compile_unet=True, steps=2 * steps)
        fast = ours(pipe, runtime, compiled_cfg, photos, class_dir, workdir, "compiled", skip=steps)
        result.update(ours_compiled=fast, speedup_compiled=base["seconds_per_step"] / fast["seconds_per_step"])
        rows.append(("train step, dreambot, compile_unet",
                     f"{fast['seconds_per_step'] * 1000:.1f} ms ({mem} {fast['peak_mb']:.0f} MiB); "
                     f"{result['speedup_compiled']:.2f}x the plain loop"))

    if args.full:
        small = dataclasses.replace(cfg, optimizer="adamw8bit", gradient_checkpointing=True)
        lean = ours(pipe, runtime, small, photos, class_dir, workdir, "lean")
        result["ours_8bit_checkpointing"] = lean
        rows.append(("train step, 8-bit AdamW + checkpointing",
                     f"{lean['seconds_per_step'] * 1000:.1f} ms (peak GPU memory {lean['peak_mb']:.0f} MiB)"))
        samples = 2 * cfg.batch_size
        tflops = UNET_TFLOP_PER_SAMPLE_512 * samples / mine["seconds_per_step"]
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in result["device"]), None)
        result.update(achieved_tflops=tflops, peak_tflops=peak)
        rows.append(("UNet throughput", f"{tflops:.0f} TFLOP/s" + (f" = {tflops / peak:.1%} of {peak:.0f} bf16 peak"
                                                                    if peak else "")))
    return mine


def memory_plans(pipe, runtime, cfg, photos, class_dir, workdir: Path, result: dict, rows: list) -> dict:
    """Our loop under the plan trainer.memory chooses and under the leanest one, measured beside the estimates."""
    from trainer import memory

    free = memory.free_bytes(runtime.device)
    chosen = memory.plan(family=cfg.family, resolution=cfg.resolution, rank=cfg.rank,
                         train_text_encoder=cfg.train_text_encoder, free_bytes=free, requested_batch=cfg.batch_size)
    mem = "peak GPU memory" if runtime.device == "cuda" else "process peak RSS"
    runs = {}
    for name, p in (("chosen", chosen), ("leanest", memory.MemoryPlan(1, True, "adamw8bit"))):
        if name == "leanest" and (p == chosen or runtime.device != "cuda"):
            continue  # 8-bit AdamW is CUDA only; nothing new to measure when the plan is already the leanest
        run_cfg = dataclasses.replace(cfg, batch_size=p.batch_size, gradient_checkpointing=p.gradient_checkpointing,
                                      optimizer=p.optimizer)
        measured = ours(pipe, runtime, run_cfg, photos, class_dir, workdir, name)
        estimate = memory.estimate_bytes(family=cfg.family, resolution=cfg.resolution, rank=cfg.rank,
                                         train_text_encoder=cfg.train_text_encoder, plan=p)
        runs[name] = {**measured, "plan": dataclasses.asdict(p), "estimate_mb": estimate / 2**20}
        rows.append((f"train step, {name} plan ({p.describe()})",
                     f"{measured['seconds_per_step'] * 1000:.1f} ms ({mem} {measured['peak_mb']:.0f} MiB; "
                     f"trainer.memory estimates {estimate / 2**20:.0f} MiB)"))
    result.update(memory_plans=runs, free_mb=None if free is None else free / 2**20)
    return runs["chosen"]


def main() -> int:
    import torch

    from trainer import data, generate
    from trainer.config import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full architecture (SD 1.5 at 512 px, SDXL at "
                        "1024 px) on CUDA")
    parser.add_argument("--family", choices=tuple(FULL), default="sd1", help="sd1 (default) or sdxl")
    parser.add_argument("--device", default="auto", help="for the tiny model: auto, cpu or cuda")
    parser.add_argument("--compile", action="store_true", help="also time training with compile_unet (on with --full)")
    parser.add_argument("--steps", type=int, help="training steps per measurement (default 20 tiny, 30 full)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/train.json"))
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    started = time.perf_counter()
    rows: list[tuple[str, str]] = []
    result: dict = {"full": args.full, "family": args.family}

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        pipe, runtime, photos = build(args, workdir)
        device = runtime.device
        result["device"] = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        resolution = FULL[args.family][1] if args.full else 64
        steps = args.steps or (30 if args.full else 20)
        n_class = (4 if args.family == "sdxl" else 8) if args.full else 4  # SDXL's are 4x the pixels
        cfg = TrainConfig(base_model="bench", family=args.family, steps=steps, resolution=resolution,
                          class_images=n_class, checkpoint_every=10 * steps, rank=16, alpha=16.0, sample_steps=25,
                          warmup_steps=0, sample_seeds=(0,), eval_prompts=())
        rows.append(("device", f"{result['device']} ({runtime.dtype_name} base weights)"))
        rows.append(("model", FULL[args.family][2] if args.full else f"tiny {args.family} (dreambot test model)"))

        t = time.perf_counter()
        class_dir = data.generate_class_images(pipe, workdir / "classes", prompt=cfg.class_prompt, count=n_class,
                                               resolution=resolution, steps=cfg.sample_steps,
                                               guidance=cfg.guidance_scale, batch_size=8)
        sync(device)
        result["class_images_seconds_each"] = (time.perf_counter() - t) / n_class
        rows.append(("class image generation", f"{result['class_images_seconds_each']:.3f} s/image "
                                                 f"({cfg.sample_steps} steps, CFG, batch 8)"))

        if args.family == "sdxl":
            mine = memory_plans(pipe, runtime, cfg, photos, class_dir, workdir, result, rows)
        else:
            mine = compare_loops(args, pipe, runtime, cfg, photos, class_dir, workdir, steps, result, rows)

        gen = generate.ImageGenerator(pipe)
        for n in (1, 4):
            gen.generate(cfg.instance_prompt, [("bench", Path(mine["adapter"]))], n=n, seed=0, steps=25,
                         resolution=resolution)  # warm-up (first load of the adapter, kernels)
            sync(device)
            t = time.perf_counter()
            gen.generate(cfg.instance_prompt, [("bench", Path(mine["adapter"]))], n=n, seed=0, steps=25,
                         resolution=resolution)
            sync(device)
            result[f"generate_{n}_seconds"] = time.perf_counter() - t
            rows.append((f"generate {n} image{'s' if n > 1 else ''}", f"{result[f'generate_{n}_seconds']:.2f} s "
                                                                     "(25 steps, CFG, one adapter)"))

    result["total_seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"{'written':<{width}}  {args.out} ({result['total_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
