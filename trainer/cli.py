"""The trainer's commands: `worker`, `train`, `imagine`, `make-tiny-model`, `toy-subject` and `fetch-model`.

`train` and `imagine` run a job locally through the same queue, worker and code as the bot's
jobs; `train` run again after a kill resumes from the last checkpoint. Heavy libraries (torch,
diffusers) load inside the commands, never when this module is imported.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import logging
import shutil
import signal
import sys
from pathlib import Path

from storage import metrics

log = logging.getLogger(__name__)

LOCAL_USER_ID = 0  # the owner of subjects made from the command line (Discord ids are never 0)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("worker", help="run a GPU worker: claim and run training and generation jobs")
    p.add_argument("--kinds", default="train,generate", help="job kinds to take, comma-separated")
    metrics.add_flags(p)
    p.set_defaults(func=cmd_worker)

    p = subparsers.add_parser("train", help="train a subject on photos, locally, through the job queue")
    p.add_argument("--name", required=True, help="what you call the subject, e.g. rex")
    p.add_argument("--class-noun", required=True, help="what it is, e.g. dog, cat, person, mug")
    p.add_argument("--model", help="base model: hub id, diffusers folder or .safetensors (default: config)")
    p.add_argument("--preset", help="quick, balanced or faces (default: config)")
    p.add_argument("--steps", type=int, help="override the preset's number of steps")
    p.add_argument("--out", type=Path, help="copy the adapter, the kohya file and the grids here")
    p.add_argument("--consent", action="store_true",
                   help="confirm the consent text (printed) without being asked; recorded with you, the local "
                        "operator, as the one who consented")
    p.add_argument("--reviewed-by", metavar="WHO",
                   help="a subject whose class noun names a minor is always reviewed first: name the person "
                        "who reviewed it (recorded in the audit log)")
    p.add_argument("photos", nargs="+", type=Path, metavar="PHOTO")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("imagine", help="generate images of a trained subject")
    p.add_argument("prompt", help='e.g. "rex in space" or "{subject} on the moon"')
    p.add_argument("--subject", required=True, help="a subject trained with `train`, or an adapter folder")
    p.add_argument("--n", type=int, default=4, help="number of images")
    p.add_argument("--seed", type=int, help="seed of the first image (default: random)")
    p.add_argument("--steps", type=int, help="sampler steps (default: config)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance (default: config)")
    p.add_argument("--model", help="base model for an adapter folder (default: the one it was trained on)")
    p.add_argument("--out", type=Path, default=Path("imagine-out"), help="folder for the images and grid")
    p.set_defaults(func=cmd_imagine)

    p = subparsers.add_parser("make-tiny-model", help="save a tiny random Stable Diffusion model (tests, demo)")
    p.add_argument("dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prediction-type", choices=("epsilon", "v_prediction"), default="epsilon")
    p.add_argument("--arch", choices=("sd1", "sdxl", "proxy"), default="sd1",
                   help="sd1: SD 1.x-shaped (SD 2.x with --prediction-type v_prediction); sdxl: SDXL base-shaped; "
                        "proxy: SD 1.5's architecture narrowed to weigh like it on a CPU (128 px, for benchmarks)")
    p.add_argument("--proxy", dest="arch", action="store_const", const="proxy", help="the same as --arch proxy")
    p.set_defaults(func=cmd_make_tiny_model)

    p = subparsers.add_parser("toy-subject", help="write the toy world's subject photos (the demo's) and print, as "
                                                  "JSON, the shipped toy model and the settings that train on them")
    p.add_argument("dir", type=Path, help="folder for the photos")
    p.set_defaults(func=cmd_toy_subject)

    p = subparsers.add_parser("fetch-model", help="download a base model (and a safety checker) into the local "
                                                  "Hugging Face cache, only the files training and generation use")
    p.add_argument("model", nargs="?", help="hub id (default: stable-diffusion-v1-5/stable-diffusion-v1-5)")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.set_defaults(func=cmd_fetch_model)


# --- worker ----------------------------------------------------------------------------------------

def cmd_worker(args, cfg) -> int:
    """Exit code EXIT_CONFIG when the worker refuses to run until its configuration changes (`dreambot run`
    then stops restarting it)."""
    from storage.config import EXIT_CONFIG
    from trainer.errors import CannotStart
    from trainer.worker import Worker

    worker = Worker(cfg.trainer, cfg.storage, kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()))
    port = getattr(args, "metrics_port", None)
    if port is not None:
        metrics.serve(port, args.metrics_host)
    try:
        asyncio.run(_run_with_signals(worker, _with_metrics(cfg.storage, worker.run(), watch=port is not None)))
    except CannotStart as exc:
        print(f"dreambot worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


async def _with_metrics(storage, coro, *, watch: bool):
    """`coro`, with the database gauges (queue depth, outbox age) kept fresh beside it when `watch`."""
    if not watch:
        return await coro
    async with metrics.watching(storage.database, busy_timeout_ms=storage.busy_timeout_ms):
        return await coro


async def _run_with_signals(worker, coro):
    """Run `coro`; SIGTERM and SIGINT ask the worker to checkpoint, release its job and stop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_shutdown)
    try:
        return await coro
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


# --- train -----------------------------------------------------------------------------------------

def cmd_train(args, cfg) -> int:
    return asyncio.run(_train(args, cfg))


async def _train(args, cfg) -> int:
    from storage import consent, files, intake, jobs, licenses, lifecycle, subjects
    from storage import db as storage_db

    st = cfg.storage
    uploads = [intake.Upload(label=path.name, filename=path.name, content_type=None, data=path.read_bytes())
               for path in args.photos]
    found = intake.inspect(uploads, st.photos, check_count=False)
    if found.refused:
        raise found.refusal()
    for line in found.lines:
        print(f"photo {line}")
    # trainer.model_license describes trainer.base_model; another --model answers for itself
    model_license = licenses.resolve(args.model or cfg.trainer.base_model,
                                     "" if args.model else cfg.trainer.model_license)
    given = args.consent or _ask_consent(consent.text_for(name=subjects.normalize_name(args.name),
                                                         class_noun=subjects.normalize_class_noun(args.class_noun),
                                                         model_license=model_license))
    params = {"preset": args.preset or cfg.trainer.default_preset, "steps": args.steps, "model": args.model}
    async with storage_db.connect(st.database, busy_timeout_ms=st.busy_timeout_ms) as db:
        photos = found.accepted
        recipe = json.dumps({"name": args.name, "photos": sorted(files.sha256_bytes(p.data) for p in photos),
                             "params": params}, sort_keys=True)
        key = "cli-train-" + hashlib.sha256(recipe.encode()).hexdigest()[:24]
        # Without consent this refuses (ConsentError, printed by cli.main, exit 1) before a photo is kept.
        subject, job = await lifecycle.local_training(
            db, owner_id=LOCAL_USER_ID, name=args.name, class_noun=args.class_noun, photos=photos, params=params,
            idempotency_key=key, consent_given=given, queue=st.queue, data_dir=Path(st.data_dir),
            model_license=model_license, likeness_rules=st.likeness, reviewed_by=args.reviewed_by)
        print(f"subject {subject.name!r}: trained as '{subject.instance_prompt}'")
        if job.state == "running":
            print(f"job #{job.id} was running when its last worker stopped; it resumes once that lease "
                  f"expires (at most {st.queue.lease_seconds} s)")

    if job.state != "succeeded":
        await _run_local(cfg, job.id, f"training {subject.name}")
    async with storage_db.connect(st.database, busy_timeout_ms=st.busy_timeout_ms) as db:
        job = await jobs.get(db, job.id)
        if job.state != "succeeded":
            print(f"training failed ({job.state}): {job.error or 'stopped'}", file=sys.stderr)
            return 1
        print(f"trained {subject.name!r} in {job.result.get('seconds', 0):.0f} s "
              f"({job.result['steps']} steps); use it as '{subject.token} {subject.class_noun}' in prompts")
        if args.out:
            await _export_training(db, job, Path(st.data_dir), args.out)
    return 0


async def _export_training(db, job, data_dir: Path, out: Path) -> None:
    from storage import artifacts
    from storage.files import local

    out.mkdir(parents=True, exist_ok=True)
    adapter = await artifacts.get(db, job.result["adapter_artifact_id"])
    kohya = await artifacts.get(db, job.result["kohya_artifact_id"])
    shutil.copytree(local(data_dir, adapter.path), out / "adapter", dirs_exist_ok=True)
    shutil.copy2(local(data_dir, kohya.path), out / "kohya_lora.safetensors")
    for grid in await artifacts.for_job(db, job.id, "grid"):
        src = local(data_dir, grid.path)
        shutil.copy2(src, out / f"grid-{src.name}")
    print(f"wrote {out}/adapter (diffusers), {out}/kohya_lora.safetensors (AUTOMATIC1111/ComfyUI) and the grids")


async def _run_local(cfg, job_id: int, label: str) -> None:
    """Work the queue in this process until `job_id` is finished, with a progress bar."""
    from tqdm import tqdm

    from trainer.worker import Worker

    bar = tqdm(total=1, desc=label, unit="step", dynamic_ncols=True)

    def listen(kind: str, payload: dict) -> None:
        if payload.get("job_id") not in (None, job_id):
            return
        if kind == "progress" and payload.get("total"):
            bar.total = payload["total"]
            bar.n = payload["step"]
            if payload.get("loss") is not None:
                bar.set_postfix(loss=f"{payload['loss']:.4f}")
            bar.refresh()
        elif kind == "progress":
            bar.write(payload["message"])
        elif kind == "grid":
            bar.write(f"sample grid at step {payload['step']}: {payload.get('path')}")
        elif kind in ("failed", "retry"):
            bar.write(f"{kind}: {payload['error']}")

    worker = Worker(cfg.trainer, cfg.storage, listener=listen)
    try:
        await _run_with_signals(worker, worker.run(until_job=job_id))
    finally:
        bar.close()


# --- imagine ---------------------------------------------------------------------------------------

def cmd_imagine(args, cfg) -> int:
    folder = Path(args.subject)
    if folder.is_dir():
        return _imagine_from_folder(args, cfg, folder)
    return asyncio.run(_imagine_subject(args, cfg))


def _ask_consent(text: str) -> bool:
    """Show the consent text; only an interactive 'yes' gives it (no terminal: no consent)."""
    print(text.replace("/subjects, /export and /forget", "`dreambot forget --user 0`"))
    if not sys.stdin.isatty():
        return False
    return input("Type yes to confirm: ").strip().lower() in ("y", "yes")


def substitute(prompt: str, subject) -> str:
    """The prompt the worker receives, by the bot's own rule (storage.prompts): the subject's name, or
    '{subject}', becomes its identifier and class ('sks dog')."""
    from storage import prompts

    return prompts.expand(prompt.replace("{subject}", subject.name), [subject], subject).text


async def _imagine_subject(args, cfg) -> int:
    from storage import artifacts, jobs, lifecycle, subjects
    from storage import db as storage_db
    from storage.files import local

    st = cfg.storage
    async with storage_db.connect(st.database, busy_timeout_ms=st.busy_timeout_ms) as db:
        subject = await subjects.find(db, owner_id=LOCAL_USER_ID, name=args.subject, guild_id=None)
        if subject is None:
            print(f"no subject called {args.subject!r}: train it first with `dreambot train`", file=sys.stderr)
            return 1
        request = lifecycle.ImageRequest(user_id=LOCAL_USER_ID, guild_id=None, channel_id=None,
                                         prompt=args.prompt.replace("{subject}", subject.name),
                                         subject_name=subject.name, count=args.n, seed=args.seed,
                                         guidance=args.guidance, steps=args.steps)
        queued = await lifecycle.queue_images(db, request, queue=st.queue, likeness_rules=st.likeness)
        job, prompt = queued.job, queued.prompt
    await _run_local(cfg, job.id, "generating")
    async with storage_db.connect(st.database, busy_timeout_ms=st.busy_timeout_ms) as db:
        job = await jobs.get(db, job.id)
        if job.state != "succeeded":
            print(f"generation failed ({job.state}): {job.error}", file=sys.stderr)
            return 1
        args.out.mkdir(parents=True, exist_ok=True)
        grid = job.result.get("grid_artifact_id")  # None when the safety checker withheld every image
        for art_id in [*job.result["image_artifact_ids"], *([grid] if grid is not None else [])]:
            art = await artifacts.get(db, art_id)
            shutil.copy2(local(Path(st.data_dir), art.path), args.out / Path(art.path).name)
    print(f"prompt: {prompt}\nseeds: {job.result['seeds']}\nwrote {args.out}")
    if job.result.get("withheld"):
        print(f"{job.result['withheld']} image(s) withheld: the safety checker flagged them")
    return 0


def _imagine_from_folder(args, cfg, folder: Path) -> int:
    from storage.provenance import Marks, sha256_file
    from trainer import lora, models, safety
    from trainer.config import resolution_for
    from trainer.generate import ImageGenerator, save_grid, save_png

    meta = lora.read_metadata(folder)
    if not meta.get("token"):
        print(f"{folder} has no dreambot metadata (token, class): is it an adapter folder?", file=sys.stderr)
        return 1
    from storage import likeness
    from storage.errors import PromptRefused
    from storage.subjects import Subject

    # An adapter folder has no subject row: it is called "subject" here, as in '{subject} on the moon'.
    loose = Subject(id=0, owner_id=0, guild_id=None, name="subject", token=meta["token"],
                    class_noun=meta["class_noun"], state="trained", adapter_artifact_id=0, created_at=0.0,
                    updated_at=0.0)
    prompt = substitute(args.prompt, loose)
    refusal = likeness.check_prompt([args.prompt, prompt], [loose], cfg.storage.likeness)
    if refusal is not None:  # the same likeness rule as /imagine: this path has no subject row to go through
        raise PromptRefused(refusal.message)
    source = args.model or meta.get("base_model") or cfg.trainer.base_model
    runtime = models.pick_runtime(cfg.trainer.device, cfg.trainer.mixed_precision)
    checker = safety.load(cfg.trainer.safety_checker, source, runtime)  # as the worker does, before any work
    generator = ImageGenerator(models.load_pipeline(source, runtime, **models.load_options(cfg.trainer)))
    made = generator.generate(prompt, [("subject", folder)], n=args.n, seed=args.seed,
                              steps=args.steps or cfg.trainer.sample_steps,
                              guidance=cfg.trainer.guidance_scale if args.guidance is None else args.guidance,
                              resolution=int(meta.get("resolution") or resolution_for(cfg.trainer)))
    screened = safety.screen_images(safety.check(checker, made.images), safety.BLOCK)  # no guild: block
    images, seeds = [made.images[i] for i in screened.keep], [made.seeds[i] for i in screened.keep]
    marks = Marks(base_model=source, lora_sha256=(sha256_file(folder / lora.WEIGHT_NAME),),
                  watermark=cfg.trainer.watermark)
    for i, (image, seed) in enumerate(zip(images, seeds, strict=True)):
        save_png(image, args.out / f"{i:02d}-seed{seed}.png", marks=dataclasses.replace(marks, seed=seed))
    if images:
        save_grid(images, cols=min(4, len(images)), path=args.out / "grid.png", marks=marks)
    print(f"prompt: {prompt}\nseeds: {seeds}\nwrote {args.out}")
    if screened.withheld:
        print(f"{screened.withheld} image(s) withheld: the safety checker flagged them")
    return 0


# --- make-tiny-model -------------------------------------------------------------------------------

def cmd_make_tiny_model(args, cfg) -> int:
    from trainer.tiny_model import make_tiny_model, native_resolution

    out = make_tiny_model(args.dir, seed=args.seed, prediction_type=args.prediction_type, arch=args.arch)
    kind = {"sd1": "tiny Stable Diffusion", "sdxl": "tiny SDXL", "proxy": "Stable Diffusion 1.5 proxy"}[args.arch]
    px = native_resolution(args.arch)
    print(f"wrote a {kind} model ({args.prediction_type}) to {out} "
          f"({px} px; set trainer.base_model and trainer.resolution = {px} to use it)")
    return 0


# --- toy-subject -----------------------------------------------------------------------------------

def cmd_toy_subject(args, cfg) -> int:
    """The toy world's subject for a process that may not import it (the demo's bot side): its photos written
    to `args.dir`, and on stdout the model, the class noun and the [trainer] settings the toy world's DreamBooth
    runs change from `cfg` (with prior preservation; the safety checker aside, which the caller chooses)."""
    from trainer.toyworld import dreambooth, subject

    photos = subject.write_photos(args.dir)
    toy = dreambooth.toy_config(cfg, dreambooth.RunSpec(prior_preservation=True), args.dir).trainer
    changed = {f.name: getattr(toy, f.name) for f in dataclasses.fields(toy)
               if f.name not in ("base_model", "safety_checker") and getattr(toy, f.name) != getattr(cfg.trainer, f.name)}
    print(json.dumps({"model": str(dreambooth.TOY_MODEL), "resolution": toy.resolution,
                      "class_noun": subject.CLASS_NOUN, "photos": [str(p) for p in photos], "trainer": changed}))
    return 0


# --- fetch-model -----------------------------------------------------------------------------------

def cmd_fetch_model(args, cfg) -> int:
    from trainer import fetch

    fetched = fetch.fetch(args.model or fetch.DEFAULT_MODEL, revision=args.revision)
    total = sum(fetch.size_of(f) for f in fetched)
    for f in fetched:
        print(f"{f.repo_id}: {len(f.files)} files in {f.folder}")
    print(f"fetched {fetch.human_size(total)}. In config.toml, under [trainer]:\n  {fetch.config_line(fetched[0])}")
    if len(fetched) > 1:
        print(f"  (the model ships no safety checker: safety_checker = \"auto\" uses {fetched[1].repo_id})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """A parser with only the trainer's commands (tests and `python -m trainer.cli`)."""
    parser = argparse.ArgumentParser(prog="dreambot-trainer")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser
