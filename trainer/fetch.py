"""`dreambot fetch-model`: download a base model, and a safety checker, into the local Hugging Face cache.

Only what training and generation load is fetched: the pipeline's components (those model_index.json
names), each one's configs and tokenizer files and one copy of its weights: the fp16 safetensors
variant where the component has one (half the download; the worker casts to its own dtype), else
the plain safetensors. Never EMA or other variants, `.ckpt`/`.bin`/Flax/ONNX/OpenVINO duplicates or
the single-file checkpoints beside the diffusers folders. The model card and license files come
too: storage.licenses reads them. When the model ships no safety checker,
CompVis/stable-diffusion-safety-checker is fetched the same way.

The choice of files is `choose_files`, a pure function of the repository's file list (and its
model_index.json), so it is tested without the network.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from trainer.errors import TrainerError
from trainer.safety import STANDARD

log = logging.getLogger(__name__)

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
CONFIG_SUFFIXES = (".json", ".txt", ".model")  # configs, tokenizer vocabularies and merges, sentencepiece models
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".h5", ".onnx", ".onnx_data",
                   ".pb", ".xml", ".gguf")  # every weight format seen in model repositories; only the first is kept
DOC_NAMES = ("README.md", "LICENSE", "LICENSE.md", "LICENSE.txt")  # the model card and license (storage.licenses)
PREFERRED_VARIANT = "fp16"


class FetchError(TrainerError):
    """The model cannot be fetched as dreambot loads it; the message says why and what to do."""


@dataclass(frozen=True)
class Fetched:
    repo_id: str
    folder: Path  # the snapshot folder in the local cache
    files: tuple[str, ...]  # what was fetched, relative to `folder`
    revision: str | None = None
    pipeline: bool = True  # a diffusers pipeline (a base model); False: a single model such as a safety checker


def components(model_index: dict) -> list[str]:
    """The folders a diffusers pipeline loads: model_index.json's [library, class] entries that are not null."""
    return sorted(name for name, value in model_index.items()
                  if not name.startswith("_") and isinstance(value, list) and len(value) == 2 and all(value))


def _variant(name: str) -> str | None:
    """'fp16' for model.fp16.safetensors, diffusion_pytorch_model-00001-of-00002.fp16.safetensors and
    model.safetensors.index.fp16.json; None for the plain names."""
    if ".safetensors.index" in name:  # an index of sharded weights: name.safetensors.index[.variant].json
        parts = name.split(".safetensors.index")[1].split(".")
        return parts[1] if len(parts) == 3 else None
    parts = name.split(".")
    return parts[-2] if len(parts) >= 3 else None


def _is_weight(name: str) -> bool:
    return name.endswith(WEIGHT_SUFFIXES) or ".safetensors.index" in name or ".bin.index" in name


def _choose_in_folder(folder: str, names: list[str]) -> list[str]:
    """One folder of a component: its configs, and one copy of its weights (fp16 safetensors, else plain)."""
    chosen = [n for n in names if n.endswith(CONFIG_SUFFIXES) and not _is_weight(n)]
    safetensors = [n for n in names if n.endswith(".safetensors") or ".safetensors.index" in n]
    variants = {_variant(n) for n in safetensors if n.endswith(".safetensors")}
    want = PREFERRED_VARIANT if PREFERRED_VARIANT in variants else None
    weights = [n for n in safetensors if _variant(n) == want]
    if any(_is_weight(n) for n in names) and not any(n.endswith(".safetensors") for n in weights):
        where = folder or "the repository's root"
        raise FetchError(f"{where} has no plain or fp16 safetensors weights, and dreambot loads only those "
                         "(no pickled .bin or .ckpt files, no EMA-only copies): choose a repository that has them.")
    return chosen + weights


def choose_files(files: Iterable[str], model_index: dict | None = None) -> list[str]:
    """The files to download from a repository whose file list is `files` (and whose model_index.json is
    `model_index`, for a diffusers pipeline; None for a single model such as a safety checker)."""
    by_folder: dict[str, list[str]] = {}
    for f in files:
        path = PurePosixPath(f)
        by_folder.setdefault(path.parent.as_posix() if len(path.parts) > 1 else "", []).append(path.name)
    root = by_folder.get("", [])
    docs = [n for n in root if n in DOC_NAMES or n.startswith("LICENSE")]
    if model_index is None:  # a single model: its files sit at the root
        return sorted(set(docs + _choose_in_folder("", root)))
    chosen = ["model_index.json", *docs]
    for name in components(model_index):
        if name not in by_folder:
            raise FetchError(f"model_index.json names {name}/ but the repository has no such folder.")
        chosen += [f"{name}/{n}" for n in _choose_in_folder(name, by_folder[name])]
    return sorted(set(chosen))


def ships_safety_checker(chosen: Iterable[str]) -> bool:
    """Whether the chosen pipeline files include its own safety checker and the image processor it needs."""
    chosen = set(chosen)
    return ("safety_checker/config.json" in chosen and "feature_extractor/preprocessor_config.json" in chosen
            and any(f.startswith("safety_checker/") and f.endswith(".safetensors") for f in chosen))


def fetch(repo_id: str, *, revision: str | None = None, with_checker: bool = True) -> list[Fetched]:
    """Download the model's chosen files (and the standard safety checker when it ships none) into the cache,
    with huggingface_hub's own progress bars."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    api = HfApi()
    try:
        files = api.list_repo_files(repo_id, revision=revision)
        model_index = None
        if "model_index.json" in files:
            model_index = json.loads(Path(hf_hub_download(repo_id, "model_index.json", revision=revision))
                                     .read_text(encoding="utf-8"))
        chosen = choose_files(files, model_index)
        log.info("fetching %d files of %s", len(chosen), repo_id)
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=chosen))
        out = [Fetched(repo_id, folder, tuple(chosen), revision, pipeline=model_index is not None)]
        if with_checker and model_index is not None and not ships_safety_checker(chosen):
            out += fetch(STANDARD, with_checker=False)
    except FetchError:
        raise
    except RepositoryNotFoundError as exc:  # also gated and private repositories
        raise FetchError(f"{repo_id} is not on the Hugging Face Hub, or it is gated or private: check the id, "
                         "accept its license on its page and set HF_TOKEN if it asks you to.") from exc
    except Exception as exc:  # HTTP and network errors (the HTTP client's own classes), offline mode, a full disk
        raise FetchError(f"could not download {repo_id} ({type(exc).__name__}: {exc}). Check the network "
                         "(HF_HUB_OFFLINE must not be set) and try again: what is already fetched is kept.") from exc
    return out


def size_of(fetched: Fetched) -> int:
    """Bytes on disk of what was fetched (the cache's snapshot entries link to its blobs)."""
    return sum((fetched.folder / f).stat().st_size for f in fetched.files if (fetched.folder / f).exists())


def config_line(fetched: Fetched) -> str:
    """The [trainer] line of config.toml that makes the worker use the fetched model (or safety checker)."""
    key = "base_model" if fetched.pipeline else "safety_checker"
    if fetched.revision in (None, "main"):  # the cache answers the bare id with its main snapshot
        return f'{key} = "{fetched.repo_id}"'
    return f'{key} = "{fetched.folder}"  # {fetched.repo_id} at {fetched.revision}'


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
