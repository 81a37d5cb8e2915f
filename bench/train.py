"""Benchmark the trainer: seconds per step against a plain loop, memory, class images, generation.

    python -m bench.train --proxy        # the proxy model, whole jobs on the worker: the issue-14 figures
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
bf16 peak. Prints a table last and writes JSON (default bench/out/train-tiny.json, train-full.json,
train-tiny-sdxl.json or train-full-sdxl.json).

--proxy is bench/proxy.py: step, whole-job, second-subject and warm-start figures against the plain loop
on the proxy model, alternated, written to bench/out/train.json.

With --family sdxl there is no plain-loop comparison: it times our loop under the plan trainer.memory
chooses for the free memory and under the leanest plan (batch 1, checkpointing, 8-bit AdamW), and
prints each plan's measured peak beside trainer.memory's estimate, so the estimates can be checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.device import peak_memory_mb, reset_peak, sync
from bench.reference import plain_loop

os.environ.setdefault("HF_HUB_OFFLINE", "1")

UNET_TFLOP_PER_SAMPLE_512 = 1.73  # forward + backward (activations only: base weights are frozen)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}

FULL = {"sd1": ("sd15", 512, "SD 1.5 architecture, random weights"),
        "sdxl": ("sdxl", 1024, "SDXL base architecture, random weights")}  # --family: (architecture, px, label)


def build(args, workdir: Path):
    """(pipe, runtime, photos): the tiny model through the worker's loader, or the full family built in memory."""
    from storage.sample_photos import write_pngs
    from trainer import models
    from trainer.tiny_model import build_random_pipeline, make_tiny_model

    runtime = models.pick_runtime("cuda" if args.full else args.device, "bf16")
    if args.full:
        if runtime.device != "cuda":
            sys.exit("--full needs a CUDA device")
        pipe = models.prepare_pipeline(build_random_pipeline(FULL[args.family][0], seed=0), runtime)
    else:
        pipe = models.load_pipeline(str(make_tiny_model(workdir / "tiny", arch=args.family)), runtime)
    return pipe, runtime, write_pngs(workdir)


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


def main(argv: list[str] | None = None) -> int:
    import torch

    from trainer import data, generate
    from trainer.config import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full architecture (SD 1.5 at 512 px, SDXL at "
                        "1024 px) on CUDA")
    parser.add_argument("--family", choices=tuple(FULL), default="sd1", help="sd1 (default) or sdxl")
    parser.add_argument("--device", default="auto", help="for the tiny model: auto, cpu or cuda")
    parser.add_argument("--compile", action="store_true", help="also time training with compile_unet (on with --full)")
    parser.add_argument("--steps", type=int, help="training steps per measurement (default 20 tiny, 30 full; "
                        "--proxy: per job, the default preset's)")
    parser.add_argument("--proxy", action="store_true", help="dreambot against the plain loop on the proxy model, "
                        "whole jobs included (bench/proxy.py); writes bench/out/train.json")
    parser.add_argument("--alternations", type=int, default=3, help="--proxy: times each pair runs (default 3)")
    parser.add_argument("--class-images", type=int, help="--proxy: class images per job (default: config.toml's)")
    parser.add_argument("--step-window", type=int, help="--proxy: steps timed per step window (default 20)")
    parser.add_argument("--quick", action="store_true", help="--proxy: a few steps and class images, a smoke test")
    parser.add_argument("--out", type=Path, help="default bench/out/train.json with --proxy, else "
                        "bench/out/train-{tiny,full}[-sdxl].json")
    args = parser.parse_args(argv)
    if args.proxy:
        return proxy_main(args)
    args.out = args.out or Path(f"bench/out/train-{'full' if args.full else 'tiny'}"
                                f"{'-sdxl' if args.family == 'sdxl' else ''}.json")
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
    write(result, rows, args.out, result["total_seconds"])
    return 0


def proxy_main(args) -> int:
    """--proxy: bench/proxy.py's figures, its defaults read from config.toml."""
    from bench import proxy
    from storage import config

    settings = config.load(config.REPO_CONFIG, env={}).trainer
    defaults = proxy.QUICK if args.quick else {
        "steps": settings.presets[settings.default_preset].steps, "class_images": settings.class_images,
        "step_window": 20}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    started = time.perf_counter()
    result, rows = proxy.run(args)
    result["proxy"]["total_seconds"] = time.perf_counter() - started
    write(result, rows, args.out or Path("bench/out/train.json"), result["proxy"]["total_seconds"])
    return 0


def write(result: dict, rows: list[tuple[str, str]], out: Path, seconds: float) -> None:
    """Write the JSON and print the table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"{'written':<{width}}  {out} ({seconds:.0f} s in all)")


if __name__ == "__main__":
    sys.exit(main())
