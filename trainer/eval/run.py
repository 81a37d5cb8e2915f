"""The DreamBooth paper's evaluation of one trained subject: generate with fixed seeds, embed, score, write.

For each of the 25 prompt templates (or a file's), `images_per_prompt` images of the subject
prompt ("a sks dog in the jungle") and of the class prompt ("a dog in the jungle"), both with the
subject's adapter active, image j of every prompt with seed `seed + j`. Then
    DINO, CLIP-I   subject samples against the real photos;
    CLIP-T         each subject sample against its own prompt;
    PRES           class samples against the real photos (DINO);
    DIV            pairwise perceptual distance among one prompt's subject samples;
and, for reference, the real photos' DINO and CLIP-I similarity among themselves (the paper's
"real images" row). Then DIV over the class images the subject was trained beside (the prior,
`trainer/eval/prior.py`): how varied the base model's idea of the class is. Writes report.json, a
grid per prompt (subject row over class row) and returns the report; `format_table` prints it.
The figures sit beside the paper's only as far as the metric models are the paper's: when either is
not (`trainer/eval/identity.py`), the report and the table say so, and why.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from trainer.eval import identity, metrics, prior, prompts
from trainer.eval.config import EvalConfig

PAPER = {"dreambooth_sd": {"dino": 0.668, "clip_i": 0.803, "clip_t": 0.305},
         "real_images": {"dino": 0.774, "clip_i": 0.885},
         "pres": {"with_prior_preservation": 0.493, "without": 0.664}}


@dataclass(frozen=True)
class EvalSubject:
    name: str
    token: str
    class_noun: str
    adapter_dir: Path
    photos: tuple[Path, ...]
    base_model: str
    resolution: int
    class_dir: Path | None = None  # the class images it was trained beside, when known
    train_config: str | None = None  # its training job's resolved TrainConfig (JSON), to find them


@dataclass
class PromptScore:
    prompt: str
    class_prompt: str
    dino: float
    clip_i: float
    clip_t: float
    div: float | None  # None with a single image per prompt
    pres: float | None  # None without class prompts
    grid: str | None = None


@dataclass
class Report:
    subject: str
    dino: float
    clip_i: float
    clip_t: float
    pres: float | None
    div: float | None
    real_dino: float | None  # the real photos among themselves (None with one photo)
    real_clip_i: float | None
    n_images: int
    prior_div: float | None = None  # DIV over the class images (the prior); None when not scored
    prior: dict = field(default_factory=dict)  # the class prompt, how many images, where they came from
    config: dict = field(default_factory=dict)
    prompts: list[PromptScore] = field(default_factory=list)
    paper: dict = field(default_factory=lambda: PAPER)
    comparable_to_paper: bool = False  # both metric models are the paper's (trainer/eval/identity.py)
    why_not_comparable: str | None = None  # which models were used instead, and how that was told
    metric_models: dict = field(default_factory=dict)  # each one's source, name and verdict


def score(subject_images: list[list[Image.Image]], class_images: list[list[Image.Image]] | None,
          real_images: list[Image.Image], subject_prompts: list[str], class_prompts: list[str], dino, clip,
          *, name: str = "", prior_images: list[Image.Image] | None = None) -> Report:
    """Every metric from the images alone (one list of samples per prompt); no generation here.
    `prior_images`: the class images the subject was trained beside, for their DIV (two or more)."""
    real_dino = dino.embed(real_images)
    real_clip = clip.embed_images(real_images)
    flat = [im for row in subject_images for im in row]
    gen_dino, gen_clip = dino.embed(flat), clip.embed_images(flat)
    texts = clip.embed_texts([p for p, row in zip(subject_prompts, subject_images, strict=True) for _ in row])
    maps = dino.token_maps(flat) if max(len(r) for r in subject_images) > 1 else None
    class_dino = dino.embed([im for row in class_images for im in row]) if class_images else None

    rows, start, cstart = [], 0, 0
    for i, row in enumerate(subject_images):
        sl = slice(start, start + len(row))
        pres = None
        if class_dino is not None:
            k = len(class_images[i])
            pres = metrics.pres_score(class_dino[cstart:cstart + k], real_dino)
            cstart += k
        rows.append(PromptScore(
            subject_prompts[i], class_prompts[i] if class_prompts else "",
            metrics.dino_score(gen_dino[sl], real_dino), metrics.clip_i_score(gen_clip[sl], real_clip),
            metrics.clip_t_score(gen_clip[sl], texts[sl]),
            metrics.div_score(maps[sl]) if maps is not None and len(row) > 1 else None, pres))
        start += len(row)
    divs = [r.div for r in rows if r.div is not None]
    return Report(
        subject=name, dino=metrics.dino_score(gen_dino, real_dino), clip_i=metrics.clip_i_score(gen_clip, real_clip),
        clip_t=metrics.clip_t_score(gen_clip, texts),
        pres=metrics.pres_score(class_dino, real_dino) if class_dino is not None else None,
        div=sum(divs) / len(divs) if divs else None,
        real_dino=metrics.self_similarity(real_dino) if len(real_images) > 1 else None,
        real_clip_i=metrics.self_similarity(real_clip) if len(real_images) > 1 else None,
        n_images=len(flat), prompts=rows,
        prior_div=prior.diversity(prior_images, dino) if prior_images and len(prior_images) > 1 else None,
        **identity.comparison(dino.identity, clip.identity))


def evaluate(pipe, subject: EvalSubject, cfg: EvalConfig, out_dir: Path, dino, clip,
             templates: tuple[str, ...] | None = None) -> Report:
    """Generate the protocol's images with the subject's adapter, score them, write report.json and grids."""
    from trainer.generate import ImageGenerator, make_grid, save_png

    templates = templates or prompts.templates_for(subject.class_noun)
    subject_prompts = prompts.subject_prompts(subject.token, subject.class_noun, templates)
    class_prompts = prompts.class_prompts(subject.class_noun, templates)
    generator = ImageGenerator(pipe, cache_size=1)
    adapters = [("eval_subject", subject.adapter_dir)]
    n = cfg.images_per_prompt

    def sample(prompt: str) -> list[Image.Image]:
        return generator.generate(prompt, adapters, n=n, seed=cfg.seed, steps=cfg.steps, guidance=cfg.guidance,
                                  resolution=subject.resolution).images

    subject_images = [sample(p) for p in subject_prompts]
    class_images = [sample(p) for p in class_prompts] if cfg.with_class_prompts else None
    real = [Image.open(p).convert("RGB") for p in subject.photos]
    the_prior = _prior(generator, subject, cfg)
    report = score(subject_images, class_images, real, subject_prompts, class_prompts, dino, clip, name=subject.name,
                   prior_images=the_prior.images if the_prior else None)
    if the_prior is not None:
        report.prior = {"prompt": the_prior.prompt, "images": len(the_prior.images), "source": the_prior.source}
    report.config = {**asdict(cfg), "base_model": subject.base_model, "adapter": str(subject.adapter_dir),
                     "resolution": subject.resolution, "token": subject.token, "class_noun": subject.class_noun}

    out_dir.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(report.prompts):
        images = subject_images[i] + (class_images[i] if class_images else [])
        path = save_png(make_grid(images, cols=n), out_dir / "grids" / f"{i:02d}-{_slug(row.prompt)}.png")
        row.grid = path.relative_to(out_dir).as_posix()
    (out_dir / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def _prior(generator, subject: EvalSubject, cfg: EvalConfig) -> prior.Prior | None:
    """The class images to score: the training set's own when known, else made again (None: not asked for)."""
    if cfg.prior_images < 2:
        return None
    prompt = prior.class_prompt(subject.class_noun)
    found = prior.from_folder(subject.class_dir, prompt=prompt, limit=cfg.prior_images) if subject.class_dir else None
    return found or prior.generate(generator, prompt=prompt, count=cfg.prior_images, steps=cfg.steps,
                                   guidance=cfg.guidance, resolution=subject.resolution)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def _f(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def format_table(report: Report) -> str:
    """A plain-text table: one line per prompt, then the means beside the paper's figures, marked not
    comparable (and why) unless both metric models are the paper's."""
    lines = [f"{'prompt':<58} {'DINO':>6} {'CLIP-I':>6} {'CLIP-T':>6} {'DIV':>6} {'PRES':>6}"]
    for r in report.prompts:
        lines.append(f"{r.prompt[:58]:<58} {_f(r.dino):>6} {_f(r.clip_i):>6} {_f(r.clip_t):>6} "
                     f"{_f(r.div):>6} {_f(r.pres):>6}")
    lines.append("-" * 94)
    lines.append(f"{'mean (' + str(report.n_images) + ' images)':<58} {_f(report.dino):>6} {_f(report.clip_i):>6} "
                 f"{_f(report.clip_t):>6} {_f(report.div):>6} {_f(report.pres):>6}")
    lines.append(f"{'real photos among themselves':<58} {_f(report.real_dino):>6} {_f(report.real_clip_i):>6}")
    if report.prior_div is not None:
        what = f"class images '{report.prior.get('prompt', '')}' ({report.prior.get('images', '?')}, the prior)"
        lines.append(f"{what[:58]:<58} {'':>6} {'':>6} {'':>6} {_f(report.prior_div):>6}")
    if report.comparable_to_paper:
        ids = ", ".join(m.hub_id for m in identity.PAPER_MODELS.values())
        lines.append(f"metric models: the paper's ({ids}); the rows below compare")
    else:
        lines += _not_comparable(report)
    p, mark = PAPER, "" if report.comparable_to_paper else " (not comparable)"
    lines.append(f"{'paper, DreamBooth on Stable Diffusion' + mark:<58} {p['dreambooth_sd']['dino']:>6.3f} "
                 f"{p['dreambooth_sd']['clip_i']:>6.3f} {p['dreambooth_sd']['clip_t']:>6.3f} {'':>6} "
                 f"{p['pres']['with_prior_preservation']:>6.3f}")
    lines.append(f"{'paper, real images' + mark:<58} {p['real_images']['dino']:>6.3f} "
                 f"{p['real_images']['clip_i']:>6.3f}")
    return "\n".join(lines)


def _not_comparable(report: Report) -> list[str]:
    """The warning above the paper's rows when the metric models are not the paper's."""
    paper = " and ".join(f"{m.label} ({m.hub_id})" for m in identity.PAPER_MODELS.values())
    lines = textwrap.wrap(f"NOT COMPARABLE to the paper's rows below: the paper scored with {paper}; this run "
                          "used other metric models:", 94, break_on_hyphens=False)
    whys = [m.get("why") for m in report.metric_models.values() if not m.get("papers")]
    for why in whys or [report.why_not_comparable or "the metric models are unknown"]:
        lines += textwrap.wrap(why, 94, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)
    return lines
