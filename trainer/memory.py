"""The memory plan: batch, gradient checkpointing and 8-bit AdamW, chosen from the model family and free GPU memory.

`plan()` walks the ladder from the fastest setting (the requested batch, no checkpointing, plain AdamW) down
to the leanest (batch 1, checkpointing, 8-bit AdamW) and takes the first rung whose estimate fits in the
free memory; an out-of-memory retry walks on down the same ladder (`ladder()`). The order says what is
given up first: checkpointing costs only time (about 30% a step) and leaves the results unchanged; 8-bit
moments change them very little; a smaller batch changes the run, so it goes last.

The estimates are modelled, not measured on a GPU (none was lent while this was written): weights at half
precision from the parameter counts (SDXL's VAE in fp32), and activations per training example scaled from
published figures: the diffusers SDXL DreamBooth LoRA example fits 16 GB with checkpointing and 8-bit AdamW
(diffusers PR #4470), and SDXL LoRA training peaks at 13-14.8 GB with checkpointing (Civitai's SDXL 1.0
training overview). `bench/gpu_check.sh` measures the real peak when a GPU is lent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GIB = 1024**3
OPTIMIZERS = ("adamw", "adamw8bit")


@dataclass(frozen=True)
class MemoryPlan:
    batch_size: int  # instance examples per step (as many class examples join them)
    gradient_checkpointing: bool  # recompute UNet activations in the backward pass
    optimizer: str  # "adamw" or "adamw8bit"

    def describe(self) -> str:
        return (f"batch {self.batch_size}, gradient checkpointing {'on' if self.gradient_checkpointing else 'off'}, "
                f"{'8-bit AdamW' if self.optimizer == 'adamw8bit' else 'AdamW'}")


@dataclass(frozen=True)
class Footprint:
    """One family's memory model (GiB): frozen weights, and activations per example at its native size."""

    weights: float  # UNet, text encoder(s) and VAE, half precision (SDXL's VAE fp32)
    native_resolution: int
    activations: float  # one example's UNet activations kept for the backward pass, no checkpointing
    text_encoder_activations: float  # one example's text-encoder activations when its LoRA trains
    lora_params_per_rank: float  # millions of LoRA parameters per unit of rank (UNet attention + text encoder)
    image_activations: float  # generating one image at its native size: the UNet at batch 2 (classifier-free
    # guidance) without gradients, and the VAE decode, whose full-resolution convolutions dominate


FOOTPRINTS = {
    "sd1": Footprint(weights=2.2, native_resolution=512, activations=2.5, text_encoder_activations=0.3,
                     lora_params_per_rank=0.25, image_activations=0.8),
    "sd2": Footprint(weights=2.6, native_resolution=768, activations=5.5, text_encoder_activations=0.6,
                     lora_params_per_rank=0.35, image_activations=1.8),
    "sdxl": Footprint(weights=7.0, native_resolution=1024, activations=10.0, text_encoder_activations=1.2,
                      lora_params_per_rank=1.5, image_activations=3.5),
}
CPU_GENERATION_BATCH = 4  # class images per batch on the CPU: batching saves little there, memory is spared
MAX_GENERATION_BATCH = 16  # beyond this a GPU gains nothing more from batching
CHECKPOINTED = 0.25  # share of activations gradient checkpointing keeps
OVERHEAD = 1.0  # GiB: CUDA context, allocator slack, the latent and embedding caches
MARGIN = 1.1  # a plan fits when its estimate times this is under the free memory


def estimate_bytes(*, family: str, resolution: int, rank: int, train_text_encoder: bool, plan: MemoryPlan) -> int:
    """Estimated peak GPU bytes of training under `plan` (with prior preservation: twice the batch's examples)."""
    fp = FOOTPRINTS[family]
    examples = 2 * plan.batch_size
    per_example = fp.activations * (resolution / fp.native_resolution) ** 2
    if plan.gradient_checkpointing:
        per_example *= CHECKPOINTED
    if train_text_encoder:
        per_example += fp.text_encoder_activations
    # fp32 LoRA weights and gradients (8 bytes a parameter), plus AdamW moments: 8 bytes, or 2 when 8-bit
    bytes_per_param = 8 + (2 if plan.optimizer == "adamw8bit" else 8)
    lora = fp.lora_params_per_rank * 1e6 * rank * bytes_per_param / GIB
    return int((fp.weights + OVERHEAD + examples * per_example + lora) * GIB)


def rungs(requested_batch: int) -> list[MemoryPlan]:
    """The whole ladder, fastest first: checkpointing on, then 8-bit AdamW, then the batch halved down to 1."""
    top = MemoryPlan(max(1, requested_batch), False, "adamw")
    steps = [top, replace(top, gradient_checkpointing=True), replace(top, gradient_checkpointing=True,
                                                                      optimizer="adamw8bit")]
    batch = top.batch_size
    while batch > 1:
        batch //= 2
        steps.append(MemoryPlan(batch, True, "adamw8bit"))
    return steps


def ladder(plan: MemoryPlan) -> list[MemoryPlan]:
    """The plans an out-of-memory retry walks down after `plan`, leanest last (batch 1, checkpointing, 8-bit);
    empty when `plan` is already the leanest."""
    return [p for p in rungs(plan.batch_size) if _leaner(p, plan)]


def _leaner(p: MemoryPlan, than: MemoryPlan) -> bool:
    """p gives up strictly more than `than` does, and nothing `than` already kept."""
    at_most = (p.batch_size <= than.batch_size and p.gradient_checkpointing >= than.gradient_checkpointing
               and OPTIMIZERS.index(p.optimizer) >= OPTIMIZERS.index(than.optimizer))
    return at_most and p != than


def plan(*, family: str, resolution: int, rank: int, train_text_encoder: bool, free_bytes: int | None,
         requested_batch: int) -> MemoryPlan:
    """The fastest rung whose estimate fits in `free_bytes` (None: the CPU, where the requested batch runs as is);
    the leanest when none fits (training then tries it, and fails with a message saying what to change)."""
    steps = rungs(requested_batch)
    if free_bytes is None:
        return steps[0]
    for p in steps:
        need = estimate_bytes(family=family, resolution=resolution, rank=rank,
                              train_text_encoder=train_text_encoder, plan=p)
        if need * MARGIN <= free_bytes:
            return p
    return steps[-1]


def generation_batch(*, family: str, resolution: int, free_bytes: int | None, count: int) -> int:
    """The most class images to generate at once (at most `count`, never below 1): on CUDA the largest batch
    whose estimate fits in `free_bytes` (up to MAX_GENERATION_BATCH); on the CPU (None) CPU_GENERATION_BATCH.
    An estimate can be wrong: the worker halves the batch on an out-of-memory error."""
    most = max(1, count)
    if free_bytes is None:
        return min(CPU_GENERATION_BATCH, most)
    fp = FOOTPRINTS[family]
    per_image = fp.image_activations * (resolution / fp.native_resolution) ** 2 * GIB
    spare = free_bytes / MARGIN - (fp.weights + OVERHEAD) * GIB
    return max(1, min(int(spare // per_image), MAX_GENERATION_BATCH, most))


def free_bytes(device: str) -> int | None:
    """Memory a training run can use on the CUDA device: free now plus what this process already holds (the
    loaded base model, whose weights the estimates include). None on the CPU."""
    import torch

    if device != "cuda" or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    return int(free) + torch.cuda.memory_allocated()
