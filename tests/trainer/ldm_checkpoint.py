"""Test-side converter: a diffusers SD 1.x or SDXL pipeline to the original (LDM) single-file layout.

diffusers ships only the other direction (`from_single_file`); this inverts its key renaming for
any number of blocks and layers, so the tiny model becomes a single file the way model sites ship them.
"""

from __future__ import annotations

from pathlib import Path

UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_prefixes(config: dict) -> dict[str, tuple[str, dict]]:
    n, layers = len(config["block_out_channels"]), config["layers_per_block"]
    out = {"time_embedding.linear_1.": ("time_embed.0.", {}), "time_embedding.linear_2.": ("time_embed.2.", {}),
           "add_embedding.linear_1.": ("label_emb.0.0.", {}), "add_embedding.linear_2.": ("label_emb.0.2.", {}),
           "conv_in.": ("input_blocks.0.0.", {}), "conv_norm_out.": ("out.0.", {}), "conv_out.": ("out.2.", {}),
           "mid_block.resnets.0.": ("middle_block.0.", UNET_RESNET), "mid_block.attentions.0.": ("middle_block.1.", {}),
           "mid_block.resnets.1.": ("middle_block.2.", UNET_RESNET)}
    for i in range(n):
        for j in range(layers):
            out[f"down_blocks.{i}.resnets.{j}."] = (f"input_blocks.{1 + i * (layers + 1) + j}.0.", UNET_RESNET)
            out[f"down_blocks.{i}.attentions.{j}."] = (f"input_blocks.{1 + i * (layers + 1) + j}.1.", {})
        if i < n - 1:
            out[f"down_blocks.{i}.downsamplers.0.conv."] = (f"input_blocks.{1 + i * (layers + 1) + layers}.0.op.", {})
        for j in range(layers + 1):
            out[f"up_blocks.{i}.resnets.{j}."] = (f"output_blocks.{i * (layers + 1) + j}.0.", UNET_RESNET)
            out[f"up_blocks.{i}.attentions.{j}."] = (f"output_blocks.{i * (layers + 1) + j}.1.", {})
        if i < n - 1:
            slot = 2 if "CrossAttn" in config["up_block_types"][i] else 1
            out[f"up_blocks.{i}.upsamplers.0."] = (f"output_blocks.{i * (layers + 1) + layers}.{slot}.", {})
    return out


def _vae_prefixes(config: dict) -> dict[str, tuple[str, dict]]:
    n, layers = len(config["block_out_channels"]), config["layers_per_block"]
    out = {"quant_conv.": ("quant_conv.", {}), "post_quant_conv.": ("post_quant_conv.", {})}
    for side in ("encoder", "decoder"):
        out |= {f"{side}.conv_in.": (f"{side}.conv_in.", {}), f"{side}.conv_out.": (f"{side}.conv_out.", {}),
                f"{side}.conv_norm_out.": (f"{side}.norm_out.", {}),
                f"{side}.mid_block.resnets.0.": (f"{side}.mid.block_1.", VAE_RESNET),
                f"{side}.mid_block.resnets.1.": (f"{side}.mid.block_2.", VAE_RESNET),
                f"{side}.mid_block.attentions.0.": (f"{side}.mid.attn_1.", VAE_ATTENTION)}
    for i in range(n):
        for j in range(layers):
            out[f"encoder.down_blocks.{i}.resnets.{j}."] = (f"encoder.down.{i}.block.{j}.", VAE_RESNET)
        for j in range(layers + 1):
            out[f"decoder.up_blocks.{i}.resnets.{j}."] = (f"decoder.up.{n - 1 - i}.block.{j}.", VAE_RESNET)
        if i < n - 1:
            out[f"encoder.down_blocks.{i}.downsamplers.0."] = (f"encoder.down.{i}.downsample.", {})
            out[f"decoder.up_blocks.{i}.upsamplers.0."] = (f"decoder.up.{n - 1 - i}.upsample.", {})
    return out


def _rename(state: dict, prefixes: dict[str, tuple[str, dict]], to: str) -> dict:
    out = {}
    for key, value in state.items():
        source = max((p for p in prefixes if key.startswith(p)), key=len)
        target, inner = prefixes[source]
        rest = key[len(source):]
        for old, new in inner.items():
            if rest.startswith(old + "."):
                rest = new + rest[len(old):]
                if inner is VAE_ATTENTION and value.ndim == 2:  # the LDM VAE's attention uses 1x1 convolutions
                    value = value[:, :, None, None]
                break
        out[to + target + rest] = value.contiguous()
    return out


def _clip(encoder, to: str) -> dict:
    """OpenAI CLIP in the transformers layout, as original checkpoints name it (text_model.*, which
    transformers 5 flattened away in CLIPTextModel)."""
    return {to + ("" if k.startswith("text_model.") else "text_model.") + k: v.contiguous()
            for k, v in encoder.state_dict().items()}


OPEN_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                   "self_attn.out_proj": "attn.out_proj"}


def _open_clip(encoder, to: str) -> dict:
    """A CLIPTextModelWithProjection in OpenCLIP's layout (SDXL's second text encoder)."""
    import torch

    state = {k.removeprefix("text_model."): v for k, v in encoder.state_dict().items()}
    out = {to + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
           to + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
           to + "ln_final.weight": state.pop("final_layer_norm.weight"),
           to + "ln_final.bias": state.pop("final_layer_norm.bias"),
           to + "text_projection": state.pop("text_projection.weight").T.contiguous()}
    for i in range(encoder.config.num_hidden_layers):
        layer = f"encoder.layers.{i}."
        block = f"{to}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[block + f"attn.in_proj_{kind}"] = torch.cat(
                [state.pop(f"{layer}self_attn.{p}_proj.{kind}") for p in "qkv"])
            for old, new in OPEN_CLIP_LAYER.items():
                out[f"{block}{new}.{kind}"] = state.pop(f"{layer}{old}.{kind}")
    assert not state, f"unconverted: {sorted(state)}"
    return {k: v.contiguous() for k, v in out.items()}


def to_single_file(pipe, path: Path) -> Path:
    """Save an SD 1.x or SDXL pipeline's UNet, VAE and text encoders as one LDM-layout .safetensors file."""
    from safetensors.torch import save_file

    state = _rename(pipe.unet.state_dict(), _unet_prefixes(pipe.unet.config), "model.diffusion_model.")
    state |= _rename(pipe.vae.state_dict(), _vae_prefixes(pipe.vae.config), "first_stage_model.")
    if getattr(pipe, "text_encoder_2", None) is None:
        state |= _clip(pipe.text_encoder, "cond_stage_model.transformer.")
    else:
        state |= _clip(pipe.text_encoder, "conditioner.embedders.0.transformer.")
        state |= _open_clip(pipe.text_encoder_2, "conditioner.embedders.1.model.")
    save_file(state, str(path))
    return path
