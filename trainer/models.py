"""Loading the base Stable Diffusion pipeline, and choosing the device and the frozen weights' dtype.

The base model is a hub id (read from the local cache only: the worker never downloads; `dreambot
fetch-model` fills the cache), a local diffusers folder, or a single `.safetensors`/`.ckpt` file. A
folder holding only fp16 weights (what fetch-model keeps where a repository has them) loads as the
fp16 variant. On CUDA the frozen base weights are
bf16 or fp16 and only the LoRA parameters are fp32; attention runs through PyTorch's SDPA
(diffusers' default processor). On CPU everything is fp32.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import ModelNotFound

log = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


@dataclass(frozen=True)
class Runtime:
    device: str  # "cuda" or "cpu"
    dtype_name: str  # frozen base weights: "float32", "bfloat16" or "float16"

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.dtype_name)

    @property
    def autocast(self) -> bool:
        """Whether forward passes run under autocast (fp32 LoRA weights beside half-precision base weights)."""
        return self.device == "cuda" and self.dtype_name != "float32"


def pick_runtime(device: str = "auto", mixed_precision: str = "bf16") -> Runtime:
    """CUDA when asked or available, with bf16/fp16 base weights; CPU always fp32."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("trainer.device is cuda but no CUDA device is visible to this process.")
    if device == "cpu" or mixed_precision == "no":
        return Runtime(device, "float32")
    if mixed_precision == "bf16" and not torch.cuda.is_bf16_supported():
        log.warning("this GPU has no bf16 support; using fp16 base weights instead")
        mixed_precision = "fp16"
    return Runtime(device, "bfloat16" if mixed_precision == "bf16" else "float16")


def source_kind(source: str) -> str:
    """'single_file', 'folder' or 'hub' for a base_model setting."""
    path = Path(source).expanduser()
    if path.suffix in SINGLE_FILE_SUFFIXES:
        if not path.is_file():
            raise ModelNotFound(f"base model file {source} does not exist.")
        return "single_file"
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelNotFound(f"{source} is a folder but not a diffusers pipeline (no model_index.json).")
        return "folder"
    if source.count("/") == 1 and not source.startswith((".", "/", "~")):
        return "hub"
    raise ModelNotFound(f"base model {source} is neither a local folder or file nor a hub id (owner/name).")


def local_folder(source: str) -> Path:
    """The folder on this machine that holds a folder or hub-id base model (a hub id's cached snapshot)."""
    kind = source_kind(source)
    if kind == "folder":
        return Path(source).expanduser()
    if kind != "hub":
        raise ModelNotFound(f"{source} is a single file, not a folder.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise ModelNotFound(f"{source} is not in the local Hugging Face cache ({type(exc).__name__}).") from exc


def weights_variant(folder: Path) -> str | None:
    """"fp16" when a model folder holds fp16 safetensors weights and no plain ones (what fetch-model keeps)."""
    names = [p.name for p in Path(folder).glob("*.safetensors")]
    if any(n.endswith(".fp16.safetensors") for n in names) and not any(n.count(".") == 1 for n in names):
        return "fp16"
    return None


def load_pipeline(source: str, runtime: Runtime, *, single_file_config: str | None = None):
    """The base StableDiffusionPipeline on the runtime's device, frozen, with no safety checker (images are
    checked after the pipeline, by trainer.safety)."""
    from diffusers import StableDiffusionPipeline

    kind = source_kind(source)
    common = {"dtype": runtime.dtype, "safety_checker": None, "requires_safety_checker": False}
    try:
        if kind == "single_file":
            pipe = StableDiffusionPipeline.from_single_file(
                str(Path(source).expanduser()), config=single_file_config, local_files_only=True, **common)
        else:
            folder = local_folder(source)
            pipe = StableDiffusionPipeline.from_pretrained(
                str(folder), local_files_only=True, variant=weights_variant(folder / "unet"), **common)
    except (OSError, ModelNotFound) as exc:
        fetch = f"Download it once with `dreambot fetch-model {source}` or set" if kind == "hub" else "Set"
        raise ModelNotFound(
            f"could not load base model {source!r} without the network ({exc.__class__.__name__}: {exc}). "
            f"{fetch} trainer.base_model to a local diffusers folder or .safetensors file.") from exc
    return prepare_pipeline(pipe, runtime)


def prepare_pipeline(pipe, runtime: Runtime):
    """Freeze a pipeline, pick its sampler and move it to the runtime (also for pipelines built in memory)."""
    from diffusers import DPMSolverMultistepScheduler

    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
        module.eval()
    pipe.set_progress_bar_config(disable=True)
    # DPM-Solver++ gives good images in 20-25 steps; training reads the same config's noise schedule.
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    if pipe.unet.dtype != runtime.dtype:  # a pipeline built in memory (benchmarks) is still fp32
        pipe.to(dtype=runtime.dtype)
    return pipe.to(runtime.device)


def fingerprint(source: str) -> str:
    """A short stable id for a base model, for cache keys: the configs plus each weight file's size and edges.

    Reading 1 MiB at each end of every weight file tells models apart in well under a second,
    where hashing whole multi-gigabyte files would take many seconds per job.
    """
    kind = source_kind(source)
    if kind == "hub":
        return hashlib.sha256(f"hub:{source}".encode()).hexdigest()[:24]
    root = Path(source).expanduser()
    files = [root] if kind == "single_file" else sorted(
        p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() if f != root else b"")
        size = f.stat().st_size
        h.update(str(size).encode())
        with open(f, "rb") as fh:
            if f.suffix in (".json", ".txt"):
                h.update(fh.read())
            else:
                h.update(fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                h.update(fh.read())
    return h.hexdigest()[:24]


def describe(pipe) -> dict:
    """Facts about a loaded pipeline worth recording: prediction type and sizes."""
    return {"prediction_type": pipe.scheduler.config.get("prediction_type", "epsilon"),
            "unet_params": sum(p.numel() for p in pipe.unet.parameters()),
            "cross_attention_dim": pipe.unet.config.cross_attention_dim,
            "scheduler": type(pipe.scheduler).__name__}
