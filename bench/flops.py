"""What one training sample of the reference script's plain loop costs, in FLOPs, split between its three parts.

    python -m bench.flops                # the proxy (trainer.tiny_model, arch "proxy") beside SD 1.5 at 512 px
    python -m bench.flops --model DIR    # a saved model (e.g. from `dreambot make-tiny-model DIR --proxy`)

Per sample the plain loop encodes one image with the VAE, runs the text encoder on one 77-token prompt and
runs the UNet forward and backward with LoRA adapters on (rank 16, trainer.lora.add_train_adapters) and the
base weights frozen, so the backward pass computes input gradients and the adapters' weight gradients only.
dreambot caches the first two, so their share is what caching can save. torch.utils.flop_counter counts the
matrix products and convolutions (normalisation and activations are left out, as in the usual figures).
Every model is counted on the meta device: shapes only (SD 1.5 needs no 3.4 GB of weights), no arithmetic done.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PARTS = ("vae", "text", "unet")
LABELS = {"vae": "VAE encode, 1 image", "text": "text encoder, 77 tokens", "unet": "UNet forward + backward"}
LORA_RANK = 16  # bench.train's and the default preset's
SD15_RESOLUTION = 512


def count(pipe, resolution: int) -> dict[str, float]:
    """FLOPs of one plain-loop training sample at `resolution` px, by part: {"vae", "text", "unet"}.

    Counted on twins of the pipeline's three models built on the meta device from their configs: FLOPs
    depend on shapes only, the pipeline is left untouched, and attention counts the same whatever kernel
    would run it (the counter has no formula for the CPU's fused attention kernel, and would skip it).
    """
    import torch

    with torch.device("meta"):
        unet, vae = (type(m).from_config(m.config) for m in (pipe.unet, pipe.vae))
        text_encoder = type(pipe.text_encoder)(pipe.text_encoder.config)
    return _count(unet, vae, text_encoder, resolution)


def _count(unet, vae, text_encoder, resolution: int) -> dict[str, float]:
    """`count` on models already on the meta device, which it changes (frozen UNet, LoRA adapters added)."""
    import types

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from trainer import lora

    pixels = torch.zeros(1, 3, resolution, resolution, device="meta")
    ids = torch.zeros(1, text_encoder.config.max_position_embeddings, dtype=torch.long, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as vae_flops:
        latents = vae.encode(pixels).latent_dist.sample()
    with torch.no_grad(), FlopCounterMode(display=False) as text_flops:
        hidden = text_encoder(ids)[0]
    unet.requires_grad_(False)  # frozen base: the backward pass computes no weight gradients but the adapters'
    lora.add_train_adapters(types.SimpleNamespace(unet=unet), rank=LORA_RANK, alpha=float(LORA_RANK),
                            text_encoder=False)
    with FlopCounterMode(display=False) as unet_flops:
        unet(latents, torch.tensor([500], device="meta"), hidden).sample.square().mean().backward()
    return {"vae": float(vae_flops.get_total_flops()), "text": float(text_flops.get_total_flops()),
            "unet": float(unet_flops.get_total_flops())}


def shares(flops: dict[str, float]) -> dict[str, float]:
    """Each part's fraction of the total (they sum to 1)."""
    total = sum(flops.values())
    return {part: value / total for part, value in flops.items()}


def split(pipe, resolution: int) -> dict[str, float]:
    """Shares {"vae", "text", "unet"} of one plain-loop training sample's FLOPs at `resolution` px."""
    return shares(count(pipe, resolution))


@functools.cache
def sd15_flops() -> dict[str, float]:
    """`count` for the real SD 1.5 architecture at 512 px, built on the meta device (a few seconds, once)."""
    import torch

    from trainer.tiny_model import build_random_models

    with torch.device("meta"):
        return _count(*build_random_models("sd15"), SD15_RESOLUTION)


def sd15_split() -> dict[str, float]:
    """`split` for the real SD 1.5 architecture at 512 px."""
    return shares(sd15_flops())


def within(a: dict, b: dict, tolerance: float = 0.10) -> bool:
    """Whether each of b's shares is matched by a's within `tolerance` of b's value (b is the reference)."""
    return all(abs(a[key] - b[key]) <= tolerance * abs(b[key]) for key in b)


def table(flops: dict[str, float], reference: dict[str, float], *, name: str, reference_name: str) -> list[str]:
    """The two splits side by side, each part's share and its relative difference from the reference's, as lines."""
    ours, theirs = shares(flops), shares(reference)
    rows = [("", name, reference_name, "difference")]
    for part in PARTS:
        rows.append((LABELS[part], f"{ours[part]:.2%}", f"{theirs[part]:.2%}", f"{ours[part] / theirs[part] - 1:+.1%}"))
    rows.append(("total per sample", f"{sum(flops.values()) / 1e9:.1f} GFLOP",
                 f"{sum(reference.values()) / 1e12:.2f} TFLOP", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    cells = [[row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
             for row in rows]
    return ["  ".join(line).rstrip() for line in cells]


def main() -> int:
    import torch

    from trainer.tiny_model import PROXY_RESOLUTION, build_random_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a diffusers folder to count (default: the proxy, built in memory)")
    parser.add_argument("--resolution", type=int, default=PROXY_RESOLUTION,
                        help=f"its training resolution in pixels (default {PROXY_RESOLUTION}, the proxy's)")
    args = parser.parse_args()
    if args.model:
        from trainer import models

        flops = count(models.load_pipeline(args.model, models.pick_runtime("cpu")), args.resolution)
    else:
        with torch.device("meta"):
            flops = _count(*build_random_models("proxy"), args.resolution)
    name = f"{'proxy' if not args.model else 'model'} ({args.resolution} px)"
    for line in table(flops, sd15_flops(), name=name, reference_name=f"SD 1.5 ({SD15_RESOLUTION} px)"):
        print(line)
    ok = within(shares(flops), sd15_split())
    print(f"every share within 10% of SD 1.5's: {'yes' if ok else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
