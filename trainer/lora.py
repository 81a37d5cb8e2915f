"""LoRA adapters through peft and diffusers: configure, save (diffusers and kohya formats), load.

The diffusers file (`pytorch_lora_weights.safetensors`) loads with `pipe.load_lora_weights`; its
safetensors header also carries where it came from (base model, token, class, steps, rank,
alpha, photo hashes). The kohya copy uses sd-scripts' key names
(`lora_unet_..._attn1_to_q.lora_down.weight` + `.alpha`) for AUTOMATIC1111, ComfyUI and friends:
`lora_te_` for SD 1.x/2.x's text encoder; for SDXL `lora_te1_`/`lora_te2_` and the UNet under its
original (SGM) block names, `lora_unet_input_blocks_4_1_...`, as sd-scripts' SDXL networks save it.
SDXL adapters cover both text encoders when the text encoder trains.
Both headers record the base model's license (`modelspec.license`, the SAI model spec's key, which
sd-scripts and ComfyUI read) and, under `dreambot.license`, the base model id, its revision, the
license's name and link: the base model's use restrictions pass on to whoever gets the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from storage import licenses
from trainer.models import family_name, is_sdxl

# Every linear layer of the UNet's transformer blocks, as kohya's sd-scripts' default LoRA: the
# attention projections, the feed-forward layers and the projections into and out of each block.
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
TRAIN_ADAPTER = "dreambot_train"
WEIGHT_NAME = "pytorch_lora_weights.safetensors"
KOHYA_NAME = "kohya_lora.safetensors"
META_KEY = "dreambot"  # our metadata, one JSON string in the safetensors header
LICENSE_KEY = "dreambot.license"  # storage.licenses.ModelLicense as JSON: base model, revision, license, link
OVERRIDE_KEY = "model_license"  # in `metadata`: trainer.model_license, when the operator set one (not recorded)
CLIP_PREFIX = "text_model."  # CLIPTextModel's inner module in the usual key names
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")  # pipeline attributes, also the key prefixes in LoRA files


def text_encoders(pipe) -> list[tuple[str, object]]:
    """(name, module) of the pipeline's text encoders: one for SD 1.x/2.x, two for SDXL."""
    return [(name, getattr(pipe, name)) for name in TEXT_ENCODERS if getattr(pipe, name, None) is not None]


def _lora_modules(pipe) -> list[tuple[str, object]]:
    return [("unet", pipe.unet), *text_encoders(pipe)]


def lora_config(rank: int, alpha: float, targets: tuple[str, ...]):
    from peft import LoraConfig

    # Gaussian A and zero B: the adapter starts as the identity, as in diffusers' reference script.
    return LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(targets))


def add_train_adapters(pipe, *, rank: int, alpha: float, text_encoder: bool) -> list:
    """Add fresh LoRA adapters to the UNet (and the text encoders: SDXL's both); return the trainable
    parameters, fp32."""
    import torch

    pipe.unet.add_adapter(lora_config(rank, alpha, UNET_TARGETS), adapter_name=TRAIN_ADAPTER)
    modules = [pipe.unet]
    if text_encoder:
        for _, te in text_encoders(pipe):
            _add_text_encoder_adapter(te, lora_config(rank, alpha, TEXT_ENCODER_TARGETS), TRAIN_ADAPTER)
            modules.append(te)
    params = []
    for module in modules:
        for name, p in module.named_parameters():
            if "lora_" in name and TRAIN_ADAPTER in name:
                p.data = p.data.to(torch.float32)  # the optimizer updates fp32 weights beside a bf16 base
                p.requires_grad_(True)
                params.append(p)
    return params


def remove_train_adapters(pipe) -> None:
    """Drop the training adapters so the pipeline is the plain base model again."""
    if TRAIN_ADAPTER in _adapters(pipe.unet):
        pipe.unet.delete_adapters(TRAIN_ADAPTER)
    from diffusers.utils.peft_utils import delete_adapter_layers

    for _, te in text_encoders(pipe):
        if TRAIN_ADAPTER in _adapters(te):
            delete_adapter_layers(te, TRAIN_ADAPTER)


def _adapters(module) -> set[str]:
    config = getattr(module, "peft_config", None) or {}
    return set(config)


def _add_text_encoder_adapter(text_encoder, config, name: str) -> None:
    """Inject a LoRA into the CLIP text encoder with peft directly.

    transformers' own `add_adapter`/`load_adapter` demand peft >= 0.22, which does not exist yet
    (0.21.2 is the newest), so this does what they do: inject the layers and register the config
    where diffusers' `set_adapters` and `delete_adapters` look for it.
    """
    from peft import inject_adapter_in_model

    inject_adapter_in_model(config, text_encoder, adapter_name=name)
    if getattr(text_encoder, "peft_config", None) is None:
        text_encoder.peft_config = {}
    text_encoder.peft_config[name] = config
    text_encoder._hf_peft_config_loaded = True


def trainable_state(pipe) -> dict:
    """The training adapters' tensors by parameter name (for checkpoints: exact, no key conversion)."""
    out = {}
    for prefix, module in _lora_modules(pipe):
        for name, p in module.named_parameters():
            if TRAIN_ADAPTER in name:
                out[f"{prefix}.{name}"] = p.detach().to("cpu", copy=True).contiguous()
    return out


def load_trainable_state(pipe, state: dict) -> None:
    """Copy tensors saved by `trainable_state` back into the training adapters; names must match."""
    import torch

    params = {}
    for prefix, module in _lora_modules(pipe):
        params.update({f"{prefix}.{n}": p for n, p in module.named_parameters() if TRAIN_ADAPTER in n})
    if set(params) != set(state):
        raise ValueError(f"checkpoint holds {len(state)} LoRA tensors, the model {len(params)}: "
                         "it was made with a different rank, targets or text-encoder setting")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name])


def peft_state_dicts(pipe) -> tuple[dict, dict[str, dict]]:
    """(UNet, {text encoder name: state}) LoRA state dicts in peft key format, without the adapter name.

    The second holds only the text encoders that have a training adapter ("text_encoder", SDXL's
    "text_encoder_2" too); it is empty when the text encoders are frozen.
    """
    from peft.utils import get_peft_model_state_dict

    unet = get_peft_model_state_dict(pipe.unet, adapter_name=TRAIN_ADAPTER)
    tes = {}
    for name, te in text_encoders(pipe):
        if TRAIN_ADAPTER in _adapters(te):
            state = get_peft_model_state_dict(te, adapter_name=TRAIN_ADAPTER)
            # transformers 5 dropped CLIPTextModel's `text_model.` level; every SD LoRA in the wild has it
            tes[name] = {k if k.startswith(CLIP_PREFIX) else CLIP_PREFIX + k: v for k, v in state.items()}
    return unet, tes


def save_adapter(pipe, out_dir: str | Path, *, metadata: dict) -> Path:
    """Save the training adapters in diffusers format with `metadata` in the header; return the file.

    Written by the pipeline class's own `save_lora_weights` (StableDiffusionXLPipeline's for SDXL, with
    `text_encoder_2` layers), so `load_lora_weights` of a fresh pipeline of that class reads it.
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    out = Path(out_dir)
    unet_sd, te_sds = peft_state_dicts(pipe)
    layers = {f"{name}_lora_layers": _contiguous(convert_state_dict_to_diffusers(sd)) for name, sd in te_sds.items()}
    # the LoRA configs go in the header too, so loading restores alpha exactly (not alpha = rank)
    layers.update({f"{name}_lora_adapter_metadata": _config_dict(getattr(pipe, name)) for name in te_sds})
    saver = StableDiffusionXLPipeline if is_sdxl(pipe) else StableDiffusionPipeline
    saver.save_lora_weights(
        # peft key names as they are: diffusers' converter renames only the attention keys, and a file
        # that mixes both namings loads without its attention LoRA (the feed-forward layers are targets too)
        out, unet_lora_layers=_contiguous(unet_sd), unet_lora_adapter_metadata=_config_dict(pipe.unet),
        safe_serialization=True, **layers)
    path = out / WEIGHT_NAME
    metadata, license_header = license_metadata(metadata)
    _add_header(path, {META_KEY: json.dumps(metadata, sort_keys=True), **license_header})
    return path


def save_kohya(pipe, path: str | Path, *, rank: int, alpha: float, metadata: dict) -> Path:
    """Save a kohya/AUTOMATIC1111-format copy of the training adapters (fp16) with sd-scripts' metadata."""
    import torch
    from diffusers.utils import convert_state_dict_to_kohya
    from safetensors.torch import save_file

    metadata, license_header = license_metadata(metadata)
    unet_sd, te_sds = peft_state_dicts(pipe)
    merged = {f"unet.{k}": v for k, v in unet_sd.items()}
    for name, sd in te_sds.items():
        merged.update({f"{name}.{k}": v for k, v in sd.items()})
    sdxl = is_sdxl(pipe)
    kohya = {}
    for key, value in convert_state_dict_to_kohya(merged).items():
        if sdxl:
            key = sgm_unet_key(key, pipe.unet.config.layers_per_block)
        else:  # SD 1.x/2.x have one text encoder, which sd-scripts calls lora_te (lora_te1 is SDXL's first)
            key = key.replace("lora_te1_", "lora_te_", 1)
        if key.endswith(".alpha"):
            value = torch.tensor(float(alpha))  # diffusers writes alpha = rank; ours may differ
        kohya[key] = value.to(torch.float16).contiguous()
    prediction_type = metadata.get("prediction_type", "epsilon")
    kind = family_name(pipe), prediction_type == "v_prediction"  # v-prediction is taken as SD 2's, as sd-scripts does
    version = KOHYA_VERSIONS[kind]
    header = {
        "ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
        # sd-scripts' get_model_version_str_for_sd1_sd2 (and sdxl_model_util's version), agreeing with ss_v2
        "ss_base_model_version": version,
        "ss_v2": str(version.startswith("sd_v2")),
        # the SAI model spec sd-scripts writes beside its own keys (library/sai_model_spec.py)
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": MODELSPEC_ARCHITECTURES[kind],
        "modelspec.implementation": ("https://github.com/Stability-AI/generative-models" if sdxl
                                     else "diffusers"),
        "modelspec.prediction_type": prediction_type,
        "modelspec.title": str(metadata.get("token", "") or "dreambot LoRA"),
        **({"modelspec.resolution": f"{metadata['resolution']}x{metadata['resolution']}"}
           if metadata.get("resolution") else {}),
        "ss_sd_model_name": str(metadata.get("base_model", "")),
        "ss_max_train_steps": str(metadata.get("steps", "")),
        "ss_steps": str(metadata.get("steps_done", "")),  # steps done when saved: a checkpoint's own step
        "ss_resolution": str(metadata.get("resolution", "")),
        "ss_tag_frequency": json.dumps({"instance": {metadata.get("instance_prompt", ""): 1}}),
        META_KEY: json.dumps(metadata, sort_keys=True),
        **license_header,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(kohya, str(path), metadata=header)
    return path


# (family, v-prediction) -> sd-scripts' ss_base_model_version and the SAI model spec's architecture
KOHYA_VERSIONS = {("sd1", False): "sd_v1", ("sd1", True): "sd_v2_v", ("sd2", False): "sd_v2",
                  ("sd2", True): "sd_v2_v", ("sdxl", False): "sdxl_base_v1-0", ("sdxl", True): "sdxl_base_v1-0"}
MODELSPEC_ARCHITECTURES = {
    ("sd1", False): "stable-diffusion-v1/lora", ("sd1", True): "stable-diffusion-v2-768-v/lora",
    ("sd2", False): "stable-diffusion-v2-512/lora", ("sd2", True): "stable-diffusion-v2-768-v/lora",
    ("sdxl", False): "stable-diffusion-xl-v1-base/lora", ("sdxl", True): "stable-diffusion-xl-v1-base/lora"}


def sgm_unet_key(key: str, layers_per_block: int) -> str:
    """A kohya UNet key in diffusers' block names -> SDXL's original (SGM) names, as sd-scripts writes them.

    Attention block j of down block i is input block 1 + (layers_per_block + 1) * i + j (each level also
    holds its resnets' and downsampler's slots), of up block i output block (layers_per_block + 1) * i + j;
    the attention is sub-module 1 of each (0 is the resnet). diffusers' loader maps these back
    (`_maybe_map_sgm_blocks_to_diffusers`).
    """
    import re

    per_level = layers_per_block + 1
    key = re.sub(r"^lora_unet_down_blocks_(\d+)_attentions_(\d+)_",
                 lambda m: f"lora_unet_input_blocks_{1 + per_level * int(m[1]) + int(m[2])}_1_", key)
    key = re.sub(r"^lora_unet_up_blocks_(\d+)_attentions_(\d+)_",
                 lambda m: f"lora_unet_output_blocks_{per_level * int(m[1]) + int(m[2])}_1_", key)
    return re.sub(r"^lora_unet_mid_block_attentions_0_", "lora_unet_middle_block_1_", key)


def license_metadata(metadata: dict) -> tuple[dict, dict[str, str]]:
    """(metadata without the operator's override, the license header entries) for `metadata["base_model"]`.

    The license is resolved where the file is written (model card, cache snapshot, file header or the
    known-model table; storage.licenses); `metadata["model_license"]`, trainer.model_license, overrides it.
    An unknown license writes no `modelspec.license` (tools would show "unknown" as if it were one).
    """
    metadata = dict(metadata)
    found = licenses.resolve(str(metadata.get("base_model", "")), str(metadata.pop(OVERRIDE_KEY, "") or ""))
    header = {LICENSE_KEY: json.dumps(found.as_dict(), sort_keys=True)}
    if found.known:
        header["modelspec.license"] = found.license
    return metadata, header


def read_license(path: str | Path) -> dict:
    """The `dreambot.license` record of a saved adapter file (diffusers or kohya), or {} if it has none."""
    return json.loads(_header(path).get(LICENSE_KEY, "{}"))


def read_metadata(path: str | Path) -> dict:
    """Our metadata from a saved adapter file (diffusers or kohya), or {} if it has none."""
    return json.loads(_header(path).get(META_KEY, "{}"))


def _header(path: str | Path) -> dict[str, str]:
    """The safetensors header's metadata of an adapter file, or of the diffusers file in an adapter folder."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        path = path / WEIGHT_NAME
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def load_adapter(pipe, adapter_dir: str | Path, name: str) -> None:
    """Load a saved diffusers-format adapter into the pipeline under `name` (base weights untouched).

    The UNet part goes through diffusers' own loader; text-encoder parts (SDXL: `text_encoder.` and
    `text_encoder_2.` keys) through peft directly (see `_add_text_encoder_adapter`), which is what
    `pipe.load_lora_weights` would do.
    """
    from diffusers.utils import convert_state_dict_to_peft
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict

    state, alphas, meta = pipe.lora_state_dict(str(adapter_dir), weight_name=WEIGHT_NAME, return_lora_metadata=True)
    pipe.load_lora_into_unet(state, network_alphas=alphas, unet=pipe.unet, adapter_name=name, metadata=meta,
                             _pipeline=pipe)
    for te_name, te in text_encoders(pipe):
        prefix = te_name + "."
        te_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not hasattr(te, "text_model"):  # transformers 5's flattened CLIPTextModel
            te_state = {k.removeprefix(CLIP_PREFIX): v for k, v in te_state.items()}
        if not te_state:
            continue
        te_meta = {k[len(prefix):]: v for k, v in (meta or {}).items() if k.startswith(prefix)}
        if not te_meta:
            raise ValueError(f"{adapter_dir}: {te_name} LoRA without its config in the header")
        config = LoraConfig(**{k: v for k, v in te_meta.items() if k in LoraConfig.__dataclass_fields__})
        _add_text_encoder_adapter(te, config, name)
        set_peft_model_state_dict(te, convert_state_dict_to_peft(te_state), adapter_name=name)
        te.to(device=pipe.unet.device, dtype=te.dtype)


def _config_dict(module) -> dict:
    config = module.peft_config[TRAIN_ADAPTER].to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}


def _contiguous(state: dict) -> dict:
    return {k: v.detach().contiguous() for k, v in state.items()}


def _add_header(path: Path, extra: dict[str, str]) -> None:
    """Rewrite a small safetensors file with more header entries (LoRA files are a few MB)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        header = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    header.update(extra)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=header)
    tmp.replace(path)
