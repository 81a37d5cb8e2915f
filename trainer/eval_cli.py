"""`dreambot eval`: the DreamBooth paper's evaluation of a trained subject (DINO, CLIP-I, CLIP-T, PRES, DIV).

    dreambot eval --subject rex [--prompts FILE] [--images-per-prompt 4] [--out eval-out]
    dreambot eval --subject path/to/adapter --photos path/to/photos

A subject is a name trained with `dreambot train`, or an adapter folder (its metadata gives the
token, the class and the base model) whose real photos are in --photos, in the folder itself or
in its photos/ subfolder. The metric models come from --dino-model / --clip-model (hub id, read
from the local cache, or folder); unless both are the paper's, the table and report.json say its
figures are not comparable to the paper's, and why (trainer/eval/identity.py). Heavy libraries
load inside the command.

It also reports DIV over the class images the subject was trained beside (the prior: the base
model's own "a photo of a <class>"), so an operator sees how varied, or how uniform, the base
model's idea of the class is (trainer/eval/prior.py).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def add_commands(subparsers) -> None:
    from trainer.eval.config import EvalConfig

    d = EvalConfig()
    p = subparsers.add_parser("eval", help="score a trained subject with the DreamBooth paper's metrics")
    p.add_argument("--subject", required=True, help="a subject trained with `train`, or an adapter folder")
    p.add_argument("--photos", type=Path, help="the subject's real photos (for an adapter folder)")
    p.add_argument("--prompts", type=Path, help="prompt templates, one a line, with {0} {1} or {subject} "
                                                "(default: the paper's 25 for the subject's class)")
    p.add_argument("--images-per-prompt", type=int, default=d.images_per_prompt)
    p.add_argument("--seed", type=int, default=d.seed, help="image j of every prompt uses seed + j")
    p.add_argument("--steps", type=int, help="sampler steps (default: config)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance (default: config)")
    p.add_argument("--model", help="base model (default: the one the adapter was trained on)")
    p.add_argument("--dino-model", default=d.dino_model,
                   help=f"DINO ViT: hub id (from the local cache) or folder (default: the paper's {d.dino_model})")
    p.add_argument("--clip-model", default=d.clip_model,
                   help=f"CLIP model: hub id (from the local cache) or folder (default: the paper's {d.clip_model})")
    p.add_argument("--no-class-prompts", action="store_true", help="skip the class prompts (no PRES; half the time)")
    p.add_argument("--class-images", type=Path,
                   help="the class images (the prior) to score for DIV (default: the training's own set, when "
                        "still on disk, else the first ones made again with the base model)")
    p.add_argument("--prior-images", type=int, default=d.prior_images,
                   help="how many class images to score for DIV, 2 to 16 (0: skip)")
    p.add_argument("--out", type=Path, default=Path("eval-out"), help="folder for report.json and the grids")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args, cfg) -> int:
    from trainer import models
    from trainer.eval import prompts
    from trainer.eval.models import ClipEmbedder, DinoEmbedder
    from trainer.eval.run import EvalConfig, evaluate, format_table

    if not 1 <= args.images_per_prompt <= 16:
        print("--images-per-prompt must be 1 to 16", file=sys.stderr)
        return 2
    if args.prior_images != 0 and not 2 <= args.prior_images <= 16:
        print("--prior-images must be 0 (skip) or 2 to 16", file=sys.stderr)
        return 2
    subject = resolve_subject(args, cfg)
    if subject is None:
        return 1
    ecfg = EvalConfig(dino_model=args.dino_model, clip_model=args.clip_model, images_per_prompt=args.images_per_prompt,
                      seed=args.seed, steps=args.steps or cfg.trainer.sample_steps,
                      guidance=cfg.trainer.guidance_scale if args.guidance is None else args.guidance,
                      with_class_prompts=not args.no_class_prompts, prior_images=args.prior_images)
    templates = prompts.read_prompt_file(args.prompts.read_text("utf-8")) if args.prompts else None
    runtime = models.pick_runtime(cfg.trainer.device, cfg.trainer.mixed_precision)
    pipe = models.load_pipeline(args.model or subject.base_model, runtime, **models.load_options(cfg.trainer))
    subject = _with_class_dir(subject, args.class_images, pipe, cfg)
    dino, clip = DinoEmbedder(ecfg.dino_model, runtime.device), ClipEmbedder(ecfg.clip_model, runtime.device)
    report = evaluate(pipe, subject, ecfg, args.out, dino, clip, templates)
    print(format_table(report))
    if report.prior_div is not None:
        print(f"class images (the prior): DIV {report.prior_div:.3f} over {report.prior['images']} images of "
              f"'{report.prior['prompt']}' ({report.prior['source']}); the lower it is, the more alike the base "
              "model draws this class, and every subject of the class is trained beside these images")
    print(f"wrote {args.out}/report.json and {len(report.prompts)} grids in {args.out}/grids")
    return 0


def _with_class_dir(subject, given: Path | None, pipe, cfg):
    """The subject with the class images to score: --class-images, or its training's own set if on disk."""
    import dataclasses

    from trainer.errors import ModelNotFound
    from trainer.eval import prior

    if given is not None:
        return dataclasses.replace(subject, class_dir=given)
    if subject.class_dir is not None or not subject.train_config:
        return subject
    try:
        found = prior.cached_folder(subject.train_config, pipe, Path(cfg.storage.data_dir))
    except ModelNotFound:  # the model it was trained on is gone: the class images are made again instead
        found = None
    return dataclasses.replace(subject, class_dir=found)


def resolve_subject(args, cfg):
    folder = Path(args.subject)
    if folder.is_dir():
        return _from_folder(folder, args.photos, cfg)
    return asyncio.run(_from_database(args.subject, cfg))


def _images_in(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)) if folder.is_dir() else ()


def _from_folder(folder: Path, photos_dir: Path | None, cfg):
    from trainer import lora
    from trainer.config import resolution_for
    from trainer.eval.run import EvalSubject

    if not (folder / lora.WEIGHT_NAME).is_file():
        print(f"{folder} holds no {lora.WEIGHT_NAME}: is it an adapter folder?", file=sys.stderr)
        return None
    meta = lora.read_metadata(folder)
    if not meta.get("token"):
        print(f"{folder} has no dreambot metadata (token, class): is it an adapter folder?", file=sys.stderr)
        return None
    photos = next((found for found in (_images_in(d) for d in (photos_dir, folder / "photos", folder) if d) if found), ())
    if not photos:
        print(f"no real photos found: pass --photos DIR (looked in {photos_dir or folder / 'photos'} and {folder})",
              file=sys.stderr)
        return None
    return EvalSubject(name=folder.name, token=meta["token"], class_noun=meta["class_noun"], adapter_dir=folder,
                       photos=photos, base_model=meta.get("base_model") or cfg.trainer.base_model,
                       resolution=int(meta.get("resolution") or resolution_for(cfg.trainer)))


async def _from_database(name: str, cfg):
    from storage import artifacts, jobs, subjects
    from storage import db as storage_db
    from storage.errors import JobNotFound
    from storage.files import local
    from trainer.cli import LOCAL_USER_ID
    from trainer.config import resolution_for
    from trainer.eval.run import EvalSubject

    st = cfg.storage
    async with storage_db.connect(st.database, busy_timeout_ms=st.busy_timeout_ms) as db:
        subject = await subjects.find(db, owner_id=LOCAL_USER_ID, name=name, guild_id=None)
        if subject is None:
            print(f"no subject called {name!r} and no such folder: train it first with `dreambot train`",
                  file=sys.stderr)
            return None
        art = await artifacts.get(db, subject.adapter_artifact_id) if subject.adapter_artifact_id else None
        if art is None:
            print(f"subject {name!r} is {subject.state} and has no adapter yet", file=sys.stderr)
            return None
        photos = tuple(local(Path(st.data_dir), p.path) for p in await subjects.photos(db, subject.id))
        try:  # its training job's resolved config finds the class images it was trained beside
            job = await jobs.get(db, art.job_id) if art.job_id is not None else None
        except JobNotFound:
            job = None
    from trainer import lora

    adapter = local(Path(st.data_dir), art.path)
    meta = lora.read_metadata(adapter)
    return EvalSubject(name=subject.name, token=subject.token, class_noun=subject.class_noun, adapter_dir=adapter,
                       photos=photos, base_model=art.meta.get("base_model") or meta.get("base_model")
                       or cfg.trainer.base_model, resolution=int(meta.get("resolution") or resolution_for(cfg.trainer)),
                       train_config=(job.result or {}).get("config") if job is not None else None)


def build_parser():
    """A parser with only this command (tests and `python -m trainer.eval_cli`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="dreambot-eval")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


if __name__ == "__main__":
    from storage.config import load

    parsed = build_parser().parse_args()
    sys.exit(parsed.func(parsed, load(None)))
