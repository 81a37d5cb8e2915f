"""The plain training loop that diffusers' reference script (`train_dreambooth_lora.py`) runs, to time ours against."""

from __future__ import annotations

import time
from pathlib import Path

from bench.device import peak_memory_mb, reset_peak, sync


def plain_loop(pipe, runtime, cfg, photos, class_dir, steps: int, *, log_every_step: bool = True,
               skip: int = 3, save_to: Path | None = None) -> dict:
    """diffusers' reference loop: VAE-encode pixels and text-encode prompts every step, then the UNet.

    Like the reference it reads the loss every step for its progress bar (`loss.detach().item()`),
    which waits for the GPU; `log_every_step=False` drops that, to show what the sync alone costs.
    `save_to`: at the end, save the LoRA there as the reference does (diffusers' save_lora_weights).
    The photos and class images are decoded and resized once, before the loop: the reference's dataset opens,
    decodes and resizes both every step (with its default of no data-loader workers, in the training loop), so
    leaving that out can only make the plain loop look faster than the reference.
    """
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    from trainer import data, lora

    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    device, b = runtime.device, cfg.batch_size
    inst = data.to_tensor([data.load_image(p, cfg.resolution) for p in photos])
    cls = data.to_tensor([data.load_image(p, cfg.resolution) for p in data.class_image_paths(class_dir)])
    ids = torch.cat([data.token_ids(pipe.tokenizer, cfg.instance_prompt).expand(b, -1),
                     data.token_ids(pipe.tokenizer, cfg.class_prompt).expand(b, -1)]).to(device)
    params = lora.add_train_adapters(pipe, rank=cfg.rank, alpha=cfg.alpha, text_encoder=False)
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, fused=device == "cuda")
    g = torch.Generator().manual_seed(0)
    reset_peak(device)
    try:
        pipe.unet.train()
        for step in range(steps):
            if step == skip:
                sync(device)
                start = time.perf_counter()
            pixels = torch.cat([inst[torch.randint(len(inst), (b,), generator=g)],
                                cls[torch.randint(len(cls), (b,), generator=g)]]).to(device, runtime.dtype)
            with torch.autocast(device, dtype=runtime.dtype, enabled=runtime.autocast):
                with torch.no_grad():
                    latents = pipe.vae.encode(pixels).latent_dist.sample() * pipe.vae.config.scaling_factor
                    hidden = pipe.text_encoder(ids)[0]
                noise = torch.randn_like(latents)
                t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), device=device)
                pred = pipe.unet(sched.add_noise(latents, noise, t), t, hidden).sample
            inst_loss = F.mse_loss(pred[:b].float(), noise[:b].float())
            prior_loss = F.mse_loss(pred[b:].float(), noise[b:].float())
            (inst_loss + cfg.prior_loss_weight * prior_loss).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if log_every_step:
                (inst_loss + prior_loss).item()  # the reference logs the loss every step
        sync(device)
        seconds = (time.perf_counter() - start) / (steps - skip)
        if save_to is not None:
            lora.save_adapter(pipe, save_to, metadata={})
    finally:
        pipe.unet.eval()
        lora.remove_train_adapters(pipe)
    return {"seconds_per_step": seconds, "peak_mb": peak_memory_mb(device)}
