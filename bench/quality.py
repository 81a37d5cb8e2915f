"""Toy-world DreamBooth quality: subject fidelity, prompt fidelity and class collapse, with and without prior preservation.

Each run goes through `dreambot train` with the repository's config (default preset, with the toy
model's learning-rate scale, batch and offset noise: trainer/toyworld/dreambooth.py) on the
pretrained toy model in trainer/toyworld/model, then samples are read by the code-only classifier
(trainer/toyworld/classifier.py).

    python -m bench.quality [--steps N] [--checkpoint-every N] [--seeds-per-prompt 8] [--out bench/out/quality.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from trainer.toyworld import dreambooth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="training steps (default: the default preset's)")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the config's)")
    parser.add_argument("--seeds-per-prompt", type=int, default=8)
    parser.add_argument("--model", type=Path, default=dreambooth.TOY_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, help="keep the runs' data and sample grids here (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/quality.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for prior in (True, False):
            spec = dreambooth.RunSpec(prior_preservation=prior, model=args.model, steps=args.steps,
                                      checkpoint_every=args.checkpoint_every, seeds_per_prompt=args.seeds_per_prompt)
            rows.append(dreambooth.run(spec, work / ("with-prior" if prior else "without-prior")))
            print(rows[-1], flush=True)
    print(dreambooth.format_table(rows))
    dreambooth.write_json(rows, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
