"""`python -m bench.train --proxy`: dreambot against the reference script's plain loop, side by side, on the proxy.

The proxy (trainer.tiny_model, arch "proxy") is SD 1.5's architecture scaled down in width, so its VAE, text
encoder and UNet weigh against each other as SD 1.5's do at 512 px (the FLOP split is printed beside SD 1.5's).
It is saved in the diffusers layout and loaded by the worker like a real model. One process alternates the two
sides `--alternations` times; each figure is a ratio (dreambot / plain) per alternation, shown as min, median
and max:

- step: seconds per training step over a window after 3 warm-up steps, trainer.train against
  bench.reference.plain_loop (VAE and text encoder every step), batch 1 + 1 class image, no grid in the window;
- job: a whole job of the default preset on class images already made, claim to finish on one warm
  trainer.worker.Worker (its settings' grids and checkpoints included), against the plain loop for the same
  steps plus saving the LoRA, on the worker's own loaded pipeline;
- second subject: that job against the one just before it, a first subject of the same class, which made the
  class images (the cache emptied through storage first);
- warm start: claim to first step of the cached-class job (the worker's own timings).

The job ratio's dreambot job is the second subject's job: both are a whole job on class images already made.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import statistics
import sys
import time
from pathlib import Path

CLASS_NOUN = "cat"
SKIP = 3  # warm-up steps left out of each step window
TARGETS = {"step_ratio": 0.65, "job_ratio": 0.7, "second_subject_ratio": 0.35, "warm_start_s": 2.0}  # at most
LABELS = {"step_ratio": "train step, dreambot / plain loop", "job_ratio": "whole job, dreambot / plain loop",
          "second_subject_ratio": "second subject / first subject", "warm_start_s": "warm start, claim to step 1"}
QUICK = {"steps": 4, "class_images": 2, "step_window": 2}  # --quick: a smoke test, not a measurement


def settings(model: Path, data_dir: Path, *, resolution: int, class_images: int, quick: bool):
    """The repository's config.toml (no environment overrides) pointed at the proxy and a fresh data dir."""
    from storage import config

    base = config.load(config.REPO_CONFIG, env={})
    trainer = dataclasses.replace(base.trainer, base_model=str(model), resolution=resolution, poll_seconds=0.05,
                                  class_images=class_images)
    if quick:  # cheapest class images and grids: the smoke test checks the plumbing, not the figures
        trainer = dataclasses.replace(trainer, sample_steps=2, grid_images=1, grid_steps=1, final_grid_images=1,
                                      final_grid_steps=1)
    return dataclasses.replace(base, trainer=trainer, storage=dataclasses.replace(base.storage, data_dir=data_dir))


def job_config(trainer, steps: int):
    """The TrainConfig a worker resolves for a job of `steps` steps on the default preset."""
    from trainer import config as train_config

    return train_config.resolve(trainer, {"steps": steps}, token="sks", class_noun=CLASS_NOUN)


def spread(values: list[float]) -> dict:
    """min, median and max of one figure's per-alternation values."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "values": values}


def make_proxy(workdir: Path) -> Path:
    """The proxy model, saved in the diffusers layout as a real model is."""
    from trainer import tiny_model

    return tiny_model.make_tiny_model(workdir / "proxy", arch="proxy")


def flop_split(pipe, resolution: int) -> dict:
    """The proxy's FLOP split beside SD 1.5's at 512 px (bench.flops)."""
    from bench import flops

    ours, sd15 = flops.split(pipe, resolution), flops.sd15_split()
    return {"flop_split": ours, "sd15_split": sd15, "flop_split_within_10pct": flops.within(ours, sd15)}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def measure(args, workdir: Path) -> dict:
    """Every figure of the proxy bench; the JSON's "proxy" object."""
    from bench.jobs import WarmWorker
    from storage.sample_photos import write_pngs
    from trainer.tiny_model import PROXY_RESOLUTION

    pics = write_pngs(workdir)
    cfg = settings(make_proxy(workdir), workdir / "data", resolution=PROXY_RESOLUTION,
                   class_images=args.class_images, quick=args.quick)
    bench = WarmWorker(cfg, pics)

    # Warm-up: loads the pipeline into the worker and makes the class images; its times give the estimate.
    say(f"warm-up job: loading the proxy at {PROXY_RESOLUTION} px, making {args.class_images} class images")
    warm = await bench.train(class_noun=CLASS_NOUN, steps=SKIP + args.step_window)
    pipe, runtime = await bench.pipeline()
    estimate(args, warm)
    result = {"model": "proxy", "resolution": PROXY_RESOLUTION, "device": runtime.device, "quick": args.quick,
              "steps": args.steps, "class_images": args.class_images, "step_window": args.step_window,
              "alternations": args.alternations, **flop_split(pipe, PROXY_RESOLUTION)}

    # The step windows' final grid falls after the window: made as cheap as it can be.
    step_cfg = dataclasses.replace(job_config(cfg.trainer, SKIP + args.step_window), final_grid_images=1, final_grid_steps=1)
    seconds = {k: [] for k in ("dreambot_step", "plain_step", "first_subject_job", "dreambot_job", "plain_job")}
    timings = {"first_subject_job": [], "dreambot_job": []}  # the worker's own split of each job's time
    warm_starts = []
    for i in range(args.alternations):
        say(f"alternation {i + 1}/{args.alternations}: step windows")
        for key, value in step_pair(pipe, runtime, step_cfg, pics, bench.class_dir(), workdir / f"step-{i}").items():
            seconds[key].append(value)
        say(f"alternation {i + 1}/{args.alternations}: first subject (makes {args.class_images} class images), "
            "second subject, plain job")
        await bench.forget_class_images()
        first = await bench.train(class_noun=CLASS_NOUN, steps=args.steps)
        second = await bench.train(class_noun=CLASS_NOUN, steps=args.steps)
        seconds["plain_job"].append(plain_job(pipe, runtime, job_config(cfg.trainer, args.steps), pics, bench.class_dir(),
                                              workdir / f"plain-{i}"))
        seconds["first_subject_job"].append(first.seconds)
        seconds["dreambot_job"].append(second.seconds)
        timings["first_subject_job"].append(first.timings)
        timings["dreambot_job"].append(second.timings)
        if second.warm_start is not None:
            warm_starts.append(second.warm_start)

    figures = {"step_ratio": spread(ratios(seconds["dreambot_step"], seconds["plain_step"])),
               "job_ratio": spread(ratios(seconds["dreambot_job"], seconds["plain_job"])),
               "second_subject_ratio": spread(ratios(seconds["dreambot_job"], seconds["first_subject_job"])),
               "warm_start_s": spread(warm_starts) if warm_starts else None}
    for name, figure in figures.items():
        result[name] = None if figure is None else figure["median"]
    result["figures"] = {name: None if f is None else {**f, "target_at_most": TARGETS[name],
                                                       "met": f["median"] <= TARGETS[name]}
                         for name, f in figures.items()}
    result["seconds"], result["job_timings"] = seconds, timings
    return result


def estimate(args, warm) -> None:
    """Print the expected running time, from the warm-up job's seconds per step and class images."""
    t = warm.timings or {}
    per_step = t.get("training", warm.seconds) / (SKIP + args.step_window)
    class_s = t.get("class_images", 0.0)
    # per alternation: two step windows, three jobs' steps (the plain loop's slower), one class-image set
    expected = args.alternations * (3 * (SKIP + args.step_window) * per_step + 3.5 * args.steps * per_step + class_s)
    say(f"expected running time: about {expected / 60:.0f} min ({args.alternations} alternations, {args.steps}-step "
        f"jobs at ~{per_step:.2f} s/step, {args.class_images} class images in ~{class_s:.0f} s)")


def step_pair(pipe, runtime, cfg, pics: list[Path], class_dir: Path, out: Path) -> dict:
    """Seconds per step of dreambot's loop, then the plain loop's, over the same window of cfg.steps - SKIP."""
    from bench.reference import plain_loop
    from bench.train import ours

    mine = ours(pipe, runtime, cfg, pics, class_dir, out, "dreambot", skip=SKIP)["seconds_per_step"]
    plain = plain_loop(pipe, runtime, cfg, pics, class_dir, cfg.steps, skip=SKIP)["seconds_per_step"]
    return {"dreambot_step": mine, "plain_step": plain}


def plain_job(pipe, runtime, cfg, pics: list[Path], class_dir: Path, out: Path) -> float:
    """Seconds of the reference script's job: the plain loop for cfg.steps, then its LoRA saved."""
    from bench.reference import plain_loop

    began = time.perf_counter()
    plain_loop(pipe, runtime, cfg, pics, class_dir, cfg.steps, skip=min(SKIP, cfg.steps - 1), save_to=out)
    return time.perf_counter() - began


def ratios(dreambot: list[float], plain: list[float]) -> list[float]:
    """Per alternation, dreambot's seconds over the other side's."""
    return [a / b for a, b in zip(dreambot, plain, strict=True)]


def table(result: dict) -> list[tuple[str, str]]:
    """The printed rows: each figure's min / median / max beside its target."""
    quick = " [--quick: a smoke test, not a measurement]" if result["quick"] else ""
    rows = [("model", f"{result['model']} at {result['resolution']} px on {result['device']}{quick}"),
            ("runs", f"{result['alternations']} alternations; {result['steps']}-step jobs (default preset), "
                     f"{result['class_images']} class images, {result['step_window']}-step windows")]
    shares = lambda s: ", ".join(f"{k} {s[k]:.1%}" for k in ("vae", "text", "unet"))  # noqa: E731
    rows.append(("FLOP split, proxy", shares(result["flop_split"])))
    rows.append(("FLOP split, SD 1.5 at 512 px", shares(result["sd15_split"]) +
                 f" (within 10%: {'yes' if result['flop_split_within_10pct'] else 'NO'})"))
    for name, label in LABELS.items():
        f = result["figures"][name]
        unit = " s" if name == "warm_start_s" else "x"
        if f is None:
            rows.append((label, "not recorded (the job result has no timings)"))
            continue
        rows.append((label, f"{f['min']:.3f} / {f['median']:.3f} / {f['max']:.3f}{unit} (min / median / max); "
                            f"target <= {TARGETS[name]}{unit}: {'met' if f['met'] else 'NOT met'}"))
    s = result["seconds"]
    med = lambda k: statistics.median(s[k])  # noqa: E731
    rows.append(("seconds (medians)", f"step {med('dreambot_step'):.3f} vs {med('plain_step'):.3f}; job "
                                      f"{med('dreambot_job'):.1f} vs {med('plain_job'):.1f}; first subject "
                                      f"{med('first_subject_job'):.1f}"))
    return rows


def run(args) -> tuple[dict, list[tuple[str, str]]]:
    """Measure; returns ({"proxy": ...}, table rows)."""
    import tempfile

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(args, Path(tmp)))
    return {"proxy": result}, table(result)
