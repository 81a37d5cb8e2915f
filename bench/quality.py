"""Toy-world DreamBooth quality per context, held-out contexts apart, over several training seeds.

Each run goes through `dreambot train` with the repository's config (default preset, with the toy
model's learning-rate scale, batch and offset noise: trainer/toyworld/dreambooth.py) on the
pretrained toy model in trainer/toyworld/model. Samples of 12 contexts (4 the photos show, 8 they
never show: trainer/toyworld/contexts.py) are read by the code-only classifier
(trainer/toyworld/classifier.py); the base model's rate on each context is measured once, first.

    python -m bench.quality [--train-seeds 3] [--prior-only] [--seeds 32] [--steps N] [--work DIR]
                            [--out bench/out/quality.json]

It prints a table per run and the summary (medians over training seeds) against the targets, and
writes the JSON. Sample grids (8 seeds a row) are kept under --work (default bench/out/quality-runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from trainer.toyworld import dreambooth, quality


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seeds", type=int, default=1, help="training seeds 0..N-1 (with prior preservation)")
    parser.add_argument("--prior-only", action="store_true", help="skip the run without prior preservation")
    parser.add_argument("--seeds", type=int, default=32, help="evaluation samples per context")
    parser.add_argument("--steps", type=int, help="training steps (default: the default preset's)")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the config's)")
    parser.add_argument("--model", type=Path, default=dreambooth.TOY_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("bench/out/quality-runs"),
                        help="the runs' data and sample grids (emptied first)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/quality.json"))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="change a [trainer] setting for every run (after the toy world's own), e.g. snr_gamma=5")
    parser.add_argument("--skip-base", action="store_true",
                        help="don't measure the base model's rates (quick comparisons of trainer settings)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    settings = tuple(tuple(item.split("=", 1)) for item in args.set)
    if any(len(item) != 2 for item in settings):
        parser.error("--set takes NAME=VALUE, e.g. --set snr_gamma=5")
    from storage.config import ConfigError

    try:
        dreambooth.checked_settings(settings)
    except ConfigError as exc:
        parser.error(f"--set: {exc}")
    if args.work.exists():
        shutil.rmtree(args.work)
    base = {} if args.skip_base else quality.base_rates(dreambooth.generator_for(args.model), seeds=args.seeds)
    print("base model, class prompt in each context:", json.dumps({k: round(v, 3) for k, v in base.items()}),
          flush=True)
    common = dict(model=args.model, steps=args.steps, checkpoint_every=args.checkpoint_every, seeds=args.seeds,
                  settings=settings)
    specs = [dreambooth.RunSpec(prior_preservation=True, train_seed=seed, **common) for seed in range(args.train_seeds)]
    if not args.prior_only:
        specs.append(dreambooth.RunSpec(prior_preservation=False, train_seed=0, **common))
    runs = []
    for spec in specs:
        name = f"{'with' if spec.prior_preservation else 'without'}-prior-seed{spec.train_seed}"
        runs.append(dreambooth.run(spec, args.work / name))
        print(dreambooth.format_tables(runs[-1:], base), flush=True)
    doc = dreambooth.write_json(runs, args.out, base)
    print("\nsummary (medians over training seeds):", json.dumps(doc["summary"], indent=2))
    missed = dreambooth.misses(doc["summary"])
    print("targets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    print(f"wrote {args.out}; grids under {args.work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
