"""A DreamBooth run on the toy world through `dreambot train`, scored with and without prior preservation.

The run is the normal command-line path: `trainer.cli`'s `train` command (photo intake, subject
row, queued job, worker, class images, training loop, adapter export), with the repository's
config (default preset: balanced) pointed at the toy model at its 64 px resolution on the CPU.
Only what the toy world needs is changed: the base model, the resolution, CPU fp32, the base
model's learning-rate scale, batch and offset noise (see LEARNING_RATE_SCALE and NOISE_OFFSET), a
fresh data folder, and prior preservation on or off (class_images = 0 turns it off). `steps` and
`checkpoint_every` may be shortened (the CI test does).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from trainer.toyworld import quality, subject

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
TOY_MODEL = Path(__file__).resolve().parent / "model"
SUBJECT_NAME = "bee ball"
# The presets are tuned for SD 1.x; the toy model is 10x narrower, has 7 transformer blocks against
# 16, and 8x8 latents: 64x fewer loss terms per image, so far noisier steps. With the presets as
# they are it learns nothing in 800 steps. `[trainer] learning_rate_scale` and `batch_size` are the
# settings for a base model of another size; the toy world sets them as measured (subject fidelity /
# prompt fidelity / class collapse, balanced preset, 800 steps, 4 samples per prompt; x1, batch 1,
# learned nothing on the model before this one, with or without prior preservation):
#   with prior:    batch 1 x30 0.06 / 1.00 / 0.00;  batch 4 x30 0.25 / 1.00 / 0.00;
#                  batch 8 x30 0.75 / 0.94 / 0.00;  batch 8 x45 0.56 / 0.81 / 0.00;
#                  batch 16 x30 0.69 / 0.94 / 0.00
#   without prior: batch 1 x30 0.50 / 1.00 / 0.25;  batch 8 x30 0.75 / 1.00 / 0.88
#   (the model before the identity loss, batch 1, without prior: x10 0.06, x30 0.50, x100 0.06,
#   the samples falling apart). These were measured before the decoder fine-tune and offset noise,
#   with the classifier that counted any yellow and black; since then, batch 8 x20 gave 0.53 and
#   0.81 for train seeds 0 and 1 against x30's 0.72 and 0.84 (no offset noise).
LEARNING_RATE_SCALE = 30.0
BATCH_SIZE = 8  # the 4 photos and their mirror images, drawn with replacement
# Offset noise (Guttenberg 2023) trains the model to move a whole image's per-channel mean, which
# plain noise barely teaches (why SD struggles with very dark or bright images). A toy image is
# mostly one flat background colour, that is mostly that mean. Without it the subject's black half
# took the background's hue and "on a red background" often came out as noise. Measured on the
# model with the fine-tuned decoder (with prior, x30, batch 8, 800 steps, 8 samples per prompt, the
# yellow-above-black classifier), subject fidelity / prompt fidelity:
#   offset 0:    train seed 0 0.72 / 0.94;  seed 1 0.84 / 1.00
#   offset 0.05: train seed 0 0.88 / 0.88;  seed 1 0.97 / 0.97;  seed 2 0.78 / 0.91;  seed 3 0.78 / 0.91
#   offset 0.1:  train seed 0 0.81 / 0.88;  seed 1 0.75 / 0.94
# Green, blue and white backgrounds are right in every sample at 0.05; what varies is the red one,
# the photo whose subject sits lowest, by the image's edge (seeds 2 and 3 get 1 of 8 there).
NOISE_OFFSET = 0.05


@dataclass(frozen=True)
class RunSpec:
    prior_preservation: bool
    model: Path = TOY_MODEL
    steps: int | None = None  # None: the default preset's
    checkpoint_every: int | None = None  # None: the config's (grids: trainer.grid_every and the final one)
    seeds_per_prompt: int = 8  # samples per evaluation prompt (4 backgrounds; the class prompt gets twice this)
    eval_seed: int = 0


def toy_config(base, spec: RunSpec, data_dir: Path):
    """The repository's config with the toy model, 64 px, CPU fp32, its learning-rate scale, batch and
    offset noise, a fresh data folder, the prior switch, and no safety checker."""
    trainer = dataclasses.replace(
        # safety_checker "off": the toy model ships no checker (its weights are committed as trained), its
        # images of coloured shapes are scored here and posted nowhere, and "auto" would look for the
        # standard checker in a Hugging Face cache that CI does not have.
        base.trainer, base_model=str(spec.model), safety_checker="off", resolution=64, device="cpu",
        mixed_precision="no",
        learning_rate_scale=LEARNING_RATE_SCALE, batch_size=BATCH_SIZE, noise_offset=NOISE_OFFSET,
        class_images=base.trainer.class_images if spec.prior_preservation else 0,
        checkpoint_every=spec.checkpoint_every or base.trainer.checkpoint_every)
    storage = dataclasses.replace(base.storage, data_dir=data_dir, db_path="")
    return dataclasses.replace(base, trainer=trainer, storage=storage)


def train_subject(cfg, work: Path, steps: int | None) -> Path:
    """`dreambot train --name 'bee ball' --class-noun circle --consent --out work/export photos...`; the adapter
    folder. The toy subject's photos are drawn by code, so the operator's consent is given on the command line."""
    from trainer.cli import build_parser

    photos = subject.write_photos(work / "photos")
    argv = ["train", "--name", SUBJECT_NAME, "--class-noun", subject.CLASS_NOUN, "--out", str(work / "export"),
            "--consent"]
    if steps is not None:
        argv += ["--steps", str(steps)]
    args = build_parser().parse_args([*argv, *map(str, photos)])
    if args.func(args, cfg) != 0:
        raise RuntimeError("dreambot train failed; see the log above")
    return work / "export" / "adapter"


def run(spec: RunSpec, work: Path, base_cfg=None) -> dict:
    """Train on the subject's photos, then generate and score; returns the figures and what made them."""
    from storage.config import load
    from trainer import lora, models
    from trainer.generate import ImageGenerator, save_grid

    cfg = toy_config(base_cfg or load(REPO / "config.toml"), spec, work / "data")
    started = time.perf_counter()
    adapter = train_subject(cfg, work, spec.steps)
    trained = time.perf_counter() - started
    meta = lora.read_metadata(adapter)
    pipe = models.load_pipeline(str(spec.model), models.pick_runtime("cpu", "no"))
    q, subject_images, class_images = quality.measure(
        ImageGenerator(pipe, cache_size=1), adapter, meta["token"], seeds_per_prompt=spec.seeds_per_prompt,
        steps=cfg.trainer.sample_steps, guidance=cfg.trainer.guidance_scale, seed=spec.eval_seed)
    save_grid(subject_images, cols=spec.seeds_per_prompt, path=work / "subject-samples.png")
    save_grid(class_images, cols=spec.seeds_per_prompt, path=work / "class-samples.png")
    return {"prior_preservation": spec.prior_preservation, **dataclasses.asdict(q),
            "steps": meta.get("steps_done"), "preset": meta.get("preset"),
            "learning_rate": meta.get("learning_rate"), "rank": meta.get("rank"),
            "class_images": cfg.trainer.class_images, "token": meta["token"],
            "train_seconds": round(trained, 1), "total_seconds": round(time.perf_counter() - started, 1),
            "grids": [str(work / "subject-samples.png"), str(work / "class-samples.png")]}


def format_table(rows: list[dict]) -> str:
    lines = [f"{'prior preservation':<20} {'subject fidelity':>17} {'prompt fidelity':>16} {'class collapse':>15} "
             f"{'steps':>6} {'train s':>8}"]
    for r in rows:
        lines.append(f"{'with' if r['prior_preservation'] else 'without':<20} {r['subject_fidelity']:>17.3f} "
                     f"{r['prompt_fidelity']:>16.3f} {r['class_collapse']:>15.3f} {r['steps']:>6} "
                     f"{r['train_seconds']:>8.0f}")
    lines.append(f"{'required':<20} {'>= 0.8':>17} {'>= 0.8':>16} {'<= 0.2 with':>15}")
    return "\n".join(lines)


def write_json(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": rows}, indent=2) + "\n")
