"""Loading the base Stable Diffusion pipeline, and choosing the device and the frozen weights' dtype.

The base model is a hub id (read from the local cache only: the worker never downloads; `dreambot
fetch-model` fills the cache), a local diffusers folder, or a single `.safetensors`/`.ckpt` file. Its
family (SD 1.x, SD 2.x, SDXL base; storage.model_families) picks StableDiffusionPipeline or
StableDiffusionXLPipeline; other models are refused. A single file is loaded with the small config
files dreambot ships for its family (trainer/model_configs/), never fetched. A folder holding only
fp16 weights (what fetch-model keeps where a repository has them) loads as the fp16 variant. On CUDA
the frozen base weights are bf16 or fp16 and only the LoRA parameters are fp32 (SDXL's VAE stays
fp32 unless trainer.vae names an fp16-safe one); attention runs through PyTorch's SDPA (diffusers'
default processor). On CPU everything is fp32.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from storage import model_families
from trainer.errors import ModelNotFound

log = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"  # per family, for single-file checkpoints


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


def is_sdxl(pipe) -> bool:
    """Whether a loaded pipeline is SDXL (it has a second text encoder)."""
    return getattr(pipe, "text_encoder_2", None) is not None


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


def load_pipeline(source: str, runtime: Runtime, *, vae: str = "", single_file_config: str = ""):
    """The base pipeline on the runtime's device, frozen, with no safety checker (images are checked after
    the pipeline, by trainer.safety): a StableDiffusionPipeline, or a StableDiffusionXLPipeline for SDXL.

    `vae` (trainer.vae) replaces the model's VAE, e.g. with an fp16-safe SDXL VAE; `single_file_config`
    (trainer.single_file_config) is a diffusers folder or cached hub id whose configs describe a single
    file, in place of the shipped ones for its detected family. Models of other families raise
    storage.model_families.UnsupportedModel, which the worker never retries.
    """
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    kind = source_kind(source)
    try:
        if kind == "single_file":
            pipe = _load_single_file(Path(source).expanduser(), runtime, single_file_config)
        else:
            folder = local_folder(source)
            family = model_families.detect_folder(folder)
            pipe = _pipeline_class(family).from_pretrained(
                str(folder), local_files_only=True, variant=weights_variant(folder / "unet"), dtype=runtime.dtype,
                **_pipeline_options(family))
    except (OSError, ValueError, SingleFileComponentError, ModelNotFound) as exc:
        raise ModelNotFound(f"could not load base model {source!r} without the network "
                            f"({exc.__class__.__name__}: {exc}). {_load_advice(source, kind)}") from exc
    if vae:
        pipe.vae = _load_vae(vae, runtime)
    return prepare_pipeline(pipe, runtime)


def _load_advice(source: str, kind: str) -> str:
    """What to do when a base model would not load: it depends on what was set."""
    if kind == "hub":
        return (f"Download it once with `dreambot fetch-model {source}`, or set trainer.base_model to a diffusers "
                "folder or a single-file checkpoint.")
    if kind == "single_file":
        return ("The file may be damaged or of a layout the shipped configs do not describe: set "
                "trainer.single_file_config to a diffusers folder (or cached hub id) of the same architecture, "
                "or trainer.base_model to a diffusers folder or cached hub id.")
    return "Check the folder's files, or set trainer.base_model to a cached hub id or a single-file checkpoint."


def load_options(settings) -> dict:
    """load_pipeline's keyword arguments from the trainer settings (trainer.vae, trainer.single_file_config)."""
    return {"vae": settings.vae, "single_file_config": settings.single_file_config}


def _pipeline_class(family: model_families.Family):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if family.name == "sdxl" else StableDiffusionPipeline


def _pipeline_options(family: model_families.Family) -> dict:
    """No checker inside the pipeline (trainer.safety checks images) and no SDXL watermarker (trainer.watermark)."""
    if family.name == "sdxl":
        return {"add_watermarker": False}
    return {"safety_checker": None, "requires_safety_checker": False}


def single_file_family(path: Path, single_file_config: str = "") -> model_families.Family:
    """A single file's family, read from the checkpoint's keys (refusing other models); a config folder, when
    one is set, has the last word (its scheduler says what the model predicts)."""
    if path.suffix == ".safetensors":
        family = model_families.detect(str(path))
    else:
        from diffusers.loaders.single_file_utils import load_single_file_checkpoint

        state = load_single_file_checkpoint(str(path), local_files_only=True)  # a pickled .ckpt: torch reads it
        family = model_families.detect_keys({k: list(v.shape) for k, v in state.items() if hasattr(v, "shape")},
                                            filename=path.name)
    return model_families.detect_folder(_config_folder(single_file_config)) if single_file_config else family


def _config_folder(source: str) -> Path:
    kind = source_kind(source)
    if kind == "single_file":
        raise ModelNotFound(f"trainer.single_file_config {source} is a file; it must be a diffusers folder or hub id.")
    return local_folder(source)


def _load_single_file(path: Path, runtime: Runtime, single_file_config: str):
    """A single-file checkpoint, loaded offline with the configs of its family (shipped with dreambot)."""
    import tempfile

    family = single_file_family(path, single_file_config)
    options = {"dtype": runtime.dtype, "local_files_only": True, **_pipeline_options(family)}
    cls = _pipeline_class(family)
    if single_file_config:
        return cls.from_single_file(str(path), config=str(_config_folder(single_file_config)), **options)
    with tempfile.TemporaryDirectory(prefix="dreambot-config-") as tmp:
        config = write_family_config(family, Path(tmp) / family.name)
        return cls.from_single_file(str(path), config=str(config), **options)


def write_family_config(family: model_families.Family, out: Path) -> Path:
    """A diffusers config folder (no weights) for a family: the shipped configs, the family's prediction
    type, and the CLIP tokenizer's vocabulary (built from open-clip's copy, as every SD tokenizer shares it)."""
    import json
    import shutil

    from trainer.clip_tokenizer import write_clip_tokenizer

    shutil.copytree(MODEL_CONFIGS / family.name, out)
    scheduler = out / "scheduler" / "scheduler_config.json"
    config = json.loads(scheduler.read_text("utf-8"))
    config["prediction_type"] = family.prediction_type
    scheduler.write_text(json.dumps(config, indent=2), "utf-8")
    for name in ("tokenizer", "tokenizer_2"):
        folder = out / name
        if folder.is_dir():
            settings = json.loads((folder / "tokenizer_config.json").read_text("utf-8"))
            write_clip_tokenizer(folder)  # writes vocab.json + merges.txt, then its own tokenizer_config.json
            (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2), "utf-8")
    return out


def _load_vae(source: str, runtime: Runtime):
    """trainer.vae: an AutoencoderKL folder (or a pipeline folder's vae/), or a cached hub id of either."""
    from diffusers import AutoencoderKL

    path = Path(source).expanduser()
    if not path.is_dir():
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            path = Path(snapshot_download(source, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError) as exc:
            raise ModelNotFound(f"trainer.vae {source} is not a local folder or a hub id in the local cache; "
                                f"download it once with `dreambot fetch-model {source}`.") from exc
    if (path / "vae" / "config.json").is_file():
        path = path / "vae"
    try:
        return AutoencoderKL.from_pretrained(str(path), local_files_only=True, dtype=runtime.dtype,
                                             variant=weights_variant(path))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"trainer.vae {source} is not a VAE dreambot can load offline "
                            f"({type(exc).__name__}: {exc}); set it to an AutoencoderKL folder or cached hub id, "
                            "or to \"\" for the base model's own VAE.") from exc


def prepare_pipeline(pipe, runtime: Runtime):
    """Freeze a pipeline, pick its sampler and move it to the runtime (also for pipelines built in memory)."""
    import torch
    from diffusers import DPMSolverMultistepScheduler

    for module in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if module is not None:
            module.requires_grad_(False)
            module.eval()
    pipe.set_progress_bar_config(disable=True)
    # DPM-Solver++ gives good images in 20-25 steps; training reads the same config's noise schedule.
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    if pipe.unet.dtype != runtime.dtype:  # a pipeline built in memory (benchmarks) is still fp32
        pipe.to(dtype=runtime.dtype)
    if is_sdxl(pipe) and runtime.dtype != torch.float32 and pipe.vae.config.get("force_upcast", True):
        # SDXL's own VAE overflows in fp16 (its config says force_upcast); an fp16-safe one set as trainer.vae
        # (madebyollin/sdxl-vae-fp16-fix says force_upcast: false) runs in half precision.
        pipe.vae.to(dtype=torch.float32)
    return pipe.to(runtime.device)


def family_name(pipe) -> str:
    """'sdxl', 'sd2' or 'sd1' for a loaded pipeline, by the rule storage.model_families reads configs with."""
    if is_sdxl(pipe):
        return "sdxl"
    return model_families.sized_family(dict(pipe.unet.config), pipe.scheduler.config.get("prediction_type", "epsilon"))


# --- the base model's identity, for cache keys ----------------------------------------------------------

HASH_CACHE_NAME = "weight_hashes.json"


def weight_hash_cache(data_dir: str | Path) -> Path:
    """Where the worker keeps the whole-file hashes of base model weights (see fingerprint)."""
    return Path(data_dir) / "cache" / HASH_CACHE_NAME


def file_sha256(path: Path, cache: dict) -> str:
    """The sha256 of a whole file, remembered in `cache` by (resolved path, size, mtime): paid once per file."""
    real = path.resolve()  # a hub snapshot's files are links into its blobs
    stat = real.stat()
    entry = f"{real}|{stat.st_size}|{stat.st_mtime_ns}"
    if entry not in cache:
        h = hashlib.sha256()
        with open(real, "rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
        cache[entry] = h.hexdigest()
    return cache[entry]


def fingerprint(source: str, *, dtype=None, cache_path: str | Path | None = None) -> str:
    """A short stable id for a base model as loaded, for cache keys: a hash of every file's whole content,
    the hub revision (snapshot commit) and the dtype the weights run in.

    Hashing multi-gigabyte weights takes seconds, so each file's hash is kept in `cache_path` (a small
    JSON file) by path, size and modification time, and paid once per file.
    """
    import json

    kind = source_kind(source)
    root = local_folder(source) if kind == "hub" else Path(source).expanduser()
    revision = root.name if kind == "hub" else ""
    files = [root] if kind == "single_file" else sorted(
        p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    cache_file = Path(cache_path) if cache_path else None
    cache: dict = {}
    if cache_file and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text("utf-8"))
        except ValueError:
            cache = {}
    known = dict(cache)
    h = hashlib.sha256()
    h.update(f"revision:{revision}|dtype:{str(dtype or '').removeprefix('torch.')}".encode())
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() if f != root else b"")
        h.update(file_sha256(f, cache).encode())
    if cache_file and cache != known:
        from trainer.atomic import atomic_file

        with atomic_file(cache_file) as tmp:  # two workers writing at once: the last whole file wins
            tmp.write_text(json.dumps(cache, indent=0, sort_keys=True), "utf-8")
    return h.hexdigest()[:24]


def describe(pipe) -> dict:
    """Facts about a loaded pipeline worth recording: prediction type and sizes."""
    return {"family": family_name(pipe), "prediction_type": pipe.scheduler.config.get("prediction_type", "epsilon"),
            "unet_params": sum(p.numel() for p in pipe.unet.parameters()),
            "cross_attention_dim": pipe.unet.config.cross_attention_dim,
            "scheduler": type(pipe.scheduler).__name__}
