"""Pretrain the tiny Stable Diffusion architecture on the toy world, so its pictures show something.

    python -m trainer.toyworld.pretrain --out trainer/toyworld/model [--device cpu] [--threads 2]

Same modules as `trainer.tiny_model`'s "tiny" pipeline (UNet, VAE, CLIP text encoder with the real
tokenizer), built by its `build_random_pipeline`, then trained in three stages on scenes rendered
by `scenes.world_scene`:
  1. the VAE, as a plain autoencoder (MSE plus a tiny KL term, as SD's VAE), on the world's
     scenes and as many banded ones (`scenes.codec_scene`: an image codec must reproduce
     patterns, the subject's too, that no caption names); its latent scaling factor is then set
     so that latents have unit variance, as SD's 0.18215 does for SD;
  2. the decoder alone, the encoder frozen, with an L1 loss: the latents stay what they were (a
     model whose UNet is trained keeps working) and the decoder draws crisper colours from them.
     After 1,050 VAE steps the decoder still tinted the subject's black half with the background's
     hue; 1,500 decoder steps took a DreamBooth adapter's subject fidelity from 0.69 to 0.81;
  3. the UNet and the text encoder together, with SD's epsilon objective and noise schedule, on
     the latents encoded once; captions drop the colour or the background at random (so "a photo
     of a circle" has a prior, which DreamBooth's class prompt needs; a two-tone object without
     its colours is still "a two-tone circle") and are sometimes empty (the unconditional branch
     of classifier-free guidance). Some captions name the object with a random word of the
     vocabulary instead of its article ("a photo of nlwx red circle"), with the picture unchanged,
     and a token-identity loss (`identity_loss`) keeps every word told apart in the text encoder's
     output. Without it the encoder learned to drop words the world never draws: "a photo of sks
     circle" came out at cosine 0.999 to "a photo of a circle" at every position, so DreamBooth's
     identifier was invisible to the UNet; with it, the identifier's position is at cosine -0.05.
The result is saved in the diffusers layout with fp16 weights and the tokenizer's vocab.json and
merges.txt (not the 3.5 MB tokenizer.json, which the tokenizer rebuilds from them): about 7 MB.
The defaults (1,000 VAE steps of 16 images, 1,500 decoder steps of 16, 6,000 UNet steps of 32) take
about 110 minutes on one busy CPU core (measured: 1.0 s per VAE step; 0.55 s per decoder step;
0.53 s per UNet step before the identity loss, 0.79 s with it; one thread, sharing two cores with
other work), less on two idle ones. `--init` continues from an earlier result: a stage given 0
steps is skipped (with --vae-steps 0 the encoder and its latent scale are kept as they are).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from trainer.toyworld import scenes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    seed: int = 0  # seeds the scenes, the weights and every random draw
    n_scenes: int = 6_000  # world scenes rendered once and reused every epoch
    vae_steps: int = 1_000  # autoencoder optimizer steps
    vae_batch: int = 16
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6  # SD's VAE uses a KL weight this small: latents stay informative
    n_codec_scenes: int = 4_000  # banded scenes of random colours, for the VAE only (see scenes.codec_scene)
    decoder_steps: int = 1_500  # then the decoder alone, the encoder (and so the latents) kept; L1 loss
    decoder_lr: float = 1e-3
    unet_steps: int = 6_000  # UNet + text encoder optimizer steps
    unet_batch: int = 32
    unet_lr: float = 1e-3
    warmup_steps: int = 100  # linear warmup, then cosine to a tenth
    p_empty: float = 0.1  # caption replaced by "" (classifier-free guidance's unconditional branch)
    p_no_colour: float = 0.25  # caption leaves out the object's colour
    p_no_background: float = 0.25  # caption leaves out the background
    p_no_size: float = 0.3  # caption leaves out the size word ("small", "big") where it has one
    p_no_place: float = 0.3  # caption leaves out where the object is ("in the top left") where it says so
    p_filler: float = 0.3  # caption names the object with a random word before it ("a photo of nlwx circle")
    identity_weight: float = 0.05  # weight of the text encoder's token-identity loss (see identity_loss)


@dataclass(frozen=True)
class _Schedule:
    """What `trainer.losses.lr_at` reads."""
    learning_rate: float
    steps: int
    warmup_steps: int
    lr_schedule: str = "cosine"
    min_lr_ratio: float = 0.1


def render_world(cfg: PretrainConfig) -> tuple[torch.Tensor, list[scenes.Scene]]:
    """[N, 3, 64, 64] uint8 images of the first n_scenes world scenes, and the scenes."""
    world = [scenes.world_scene(cfg.seed, i) for i in range(cfg.n_scenes)]
    images = np.stack([scenes.to_array(scenes.render(s)) for s in world])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), world


def render_codec_set(cfg: PretrainConfig) -> torch.Tensor:
    """[M, 3, 64, 64] uint8 banded scenes for the VAE, some turned a quarter so bands also run upright."""
    rng = np.random.default_rng([cfg.seed, 99])
    images = np.stack([np.rot90(scenes.to_array(scenes.render(scenes.codec_scene(rng)))) if i % 2
                       else scenes.to_array(scenes.render(scenes.codec_scene(rng))) for i in range(cfg.n_codec_scenes)])
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the VAE's input range."""
    return images.float() / 127.5 - 1.0


def vae_loss(recon: torch.Tensor, target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
             kl_weight: float) -> torch.Tensor:
    """Reconstruction MSE plus kl_weight times the KL divergence to N(0, 1), per latent element."""
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    return torch.nn.functional.mse_loss(recon, target) + kl_weight * kl


def latent_scale(latents: torch.Tensor) -> float:
    """The scaling factor that gives the latents unit standard deviation (SD's 0.18215 for its VAE)."""
    return float(1.0 / latents.float().std())


N_DRAWS = 7  # uniform draws per caption (caption_for)


def caption_for(scene: scenes.Scene, u: np.ndarray, cfg: PretrainConfig, word: str = "") -> str:
    """The training caption of a scene for N_DRAWS uniform draws u: empty, or with parts left out.

    With u[6] < p_filler, `word` (a filler word) goes before the object, in place of its article
    ("a photo of nlwx red circle", as DreamBooth's "a photo of sks circle") or, where the caption
    names a size, half the time after it ("a photo of a small nlwx red circle").
    """
    if u[0] < cfg.p_empty:
        return ""
    return scenes.caption(scene, colour=u[1] >= cfg.p_no_colour, background=u[2] >= cfg.p_no_background,
                          size=u[3] >= cfg.p_no_size, place=u[4] >= cfg.p_no_place,
                          word=word if u[6] < cfg.p_filler else "", word_replaces_article=u[5] < 0.5)


def filler_words(tokenizer) -> list[str]:
    """The vocabulary's whole-word lowercase tokens (2-8 letters) that no world caption uses.

    Real CLIP has seen every token of its vocabulary in some text, "sks" among them: each one gives
    the UNet a distinct state to attend to, which is what lets DreamBooth bind a rare identifier to
    a subject. The toy world's captions use a few dozen words, so the rest of the vocabulary is
    never seen; these words stand in for the rest of the language.
    """
    return sorted(t[:-4] for t in tokenizer.get_vocab()
                  if t.endswith("</w>") and 2 <= len(t) - 4 <= 8 and t[:-4].isascii() and t[:-4].isalpha()
                  and t[:-4].islower() and t[:-4] not in scenes.CAPTION_WORDS)


def identity_loss(hidden: torch.Tensor, ids: torch.Tensor, embeddings: torch.Tensor, probe: torch.nn.Module,
                  specials: tuple[int, int], scale: float = 16.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of telling each caption word back from the text encoder's output at its place.

    The output of a word's position, through a small probe (trained here, never saved), is compared
    by cosine with every token embedding of the vocabulary (detached: the target is the word, not a
    place the embedding may move to). The diffusion loss alone lets the encoder drop words that do
    not change the picture, filler words and identifiers alike; this keeps every word in its
    output. Returns (loss, share of words told back right).
    """
    keep = (ids != specials[0]) & (ids != specials[1])
    h = torch.nn.functional.normalize(probe(hidden[keep]), dim=-1)
    logits = scale * h @ torch.nn.functional.normalize(embeddings.detach(), dim=-1).T
    target = ids[keep]
    return torch.nn.functional.cross_entropy(logits, target), (logits.argmax(-1) == target).float().mean()


def scaled_linear_alphas_cumprod(beta_start: float, beta_end: float, n: int) -> torch.Tensor:
    """SD's noise schedule: betas linear in sqrt space, then the running product of 1 - beta."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, n, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


def train_vae(vae, images: torch.Tensor, cfg: PretrainConfig, device: str, *, decoder_only: bool = False) -> None:
    """The autoencoder on `images`; or, with `decoder_only`, its decoder alone with the encoder frozen.

    The decoder-only stage sharpens what the decoder draws from the very latents the UNet was
    trained on (they do not change), with an L1 loss, which keeps colour edges crisper than MSE
    (as SD's fine-tuned ft-MSE/EMA decoders were trained with the encoder kept).
    """
    from trainer.losses import lr_at

    steps, lr = (cfg.decoder_steps, cfg.decoder_lr) if decoder_only else (cfg.vae_steps, cfg.vae_lr)
    trained = (vae.decoder, vae.post_quant_conv) if decoder_only else (vae,)
    vae.to(device).train().requires_grad_(False)
    for module in trained:
        module.requires_grad_(True)
    params = [p for module in trained for p in module.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = _Schedule(lr, steps, cfg.warmup_steps)
    gen = torch.Generator().manual_seed(cfg.seed + (7 if decoder_only else 0))  # the stages draw different batches
    started = time.perf_counter()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, sched)
        idx = torch.randint(len(images), (cfg.vae_batch,), generator=gen)
        x = to_unit_range(images[idx]).to(device)
        if torch.rand((), generator=gen) < 0.5:  # mirrored scenes are scenes too
            x = x.flip(-1)
        if decoder_only:
            with torch.no_grad():
                latents = vae.encode(x).latent_dist.sample()
            loss = (vae.decode(latents).sample - x).abs().mean()
        else:
            dist = vae.encode(x).latent_dist
            loss = vae_loss(vae.decode(dist.sample()).sample, x, dist.mean, dist.logvar, cfg.kl_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 250 == 0 or step == steps - 1:
            log.info("%s step %d/%d loss %.5f (%.2f s/step)", "decoder" if decoder_only else "vae", step + 1,
                     steps, loss.item(), (time.perf_counter() - started) / (step + 1))
    vae.eval().requires_grad_(False)


@torch.no_grad()
def encode_world(vae, images: torch.Tensor, device: str, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent means and stds of every image (unscaled), on the CPU."""
    means, stds = [], []
    for chunk in images.split(batch):
        dist = vae.encode(to_unit_range(chunk).to(device)).latent_dist
        means.append(dist.mean.cpu())
        stds.append(dist.std.cpu())
    return torch.cat(means), torch.cat(stds)


def train_denoiser(pipe, world: list[scenes.Scene], means: torch.Tensor, stds: torch.Tensor,
                   cfg: PretrainConfig, device: str) -> None:
    from trainer.losses import add_noise, lr_at

    unet, text_encoder, tokenizer = pipe.unet, pipe.text_encoder, pipe.tokenizer
    sc = pipe.scheduler.config
    alphas_cumprod = scaled_linear_alphas_cumprod(sc.beta_start, sc.beta_end, sc.num_train_timesteps).to(device)
    scale = pipe.vae.config.scaling_factor
    for m in (unet, text_encoder):
        m.to(device).train().requires_grad_(True)
    width = text_encoder.config.hidden_size
    probe = torch.nn.Linear(width, width).to(device)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params + list(probe.parameters()), lr=cfg.unet_lr, weight_decay=0.0)
    fillers = filler_words(tokenizer)
    specials = (tokenizer.bos_token_id, tokenizer.eos_token_id)
    embeddings = text_encoder.get_input_embeddings().weight
    sched = _Schedule(cfg.unet_lr, cfg.unet_steps, cfg.warmup_steps)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed + 1)
    started = time.perf_counter()
    for step in range(cfg.unet_steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, sched)
        idx = torch.randint(len(world), (cfg.unet_batch,), generator=gen)
        flip = torch.rand(cfg.unet_batch, generator=gen) < 0.5
        mean, std = means[idx], stds[idx]
        mean = torch.where(flip[:, None, None, None], mean.flip(-1), mean)
        std = torch.where(flip[:, None, None, None], std.flip(-1), std)
        latents = ((mean + std * torch.randn(mean.shape, generator=gen)) * scale).to(device)
        noise = torch.randn(latents.shape, generator=gen).to(device)
        t = torch.randint(0, len(alphas_cumprod), (cfg.unet_batch,), generator=gen).to(device)
        u = rng.random((cfg.unet_batch, N_DRAWS))
        texts = [caption_for(scenes.mirrored(world[i]) if flip[k] else world[i], u[k], cfg,
                             fillers[rng.integers(len(fillers))]) for k, i in enumerate(idx.tolist())]
        ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        hidden = text_encoder(ids)[0]
        pred = unet(add_noise(latents, noise, t, alphas_cumprod), t, hidden).sample
        denoise = torch.nn.functional.mse_loss(pred, noise)
        identity, told = identity_loss(hidden, ids, embeddings, probe, specials)
        loss = denoise + cfg.identity_weight * identity
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 250 == 0 or step == cfg.unet_steps - 1:
            log.info("unet step %d/%d loss %.5f identity %.3f (%.0f%% of words told back) (%.2f s/step)",
                     step + 1, cfg.unet_steps, denoise.item(), identity.item(), 100 * told.item(),
                     (time.perf_counter() - started) / (step + 1))
    for m in (unet, text_encoder):
        m.eval().requires_grad_(False)


def pretrain(out_dir: Path, cfg: PretrainConfig = PretrainConfig(), *, device: str = "cpu",
             init: Path | None = None) -> Path:
    """Train the tiny pipeline on the toy world and save it (fp16, diffusers layout) under out_dir."""
    from trainer.train import set_seed

    started = time.perf_counter()
    set_seed(cfg.seed)
    pipe = _initial_pipeline(cfg.seed, init)
    images, world = render_world(cfg)
    log.info("rendered %d scenes in %.0f s", len(world), time.perf_counter() - started)
    if cfg.vae_steps or cfg.decoder_steps:  # 0 and 0 keep the VAE of `init` (a model pretrained before)
        codec_set = torch.cat([images, render_codec_set(cfg)]) if cfg.n_codec_scenes else images
        if cfg.vae_steps:
            train_vae(pipe.vae, codec_set, cfg, device)
        if cfg.decoder_steps:
            train_vae(pipe.vae, codec_set, cfg, device, decoder_only=True)
    means, stds = encode_world(pipe.vae, images, device)
    if cfg.vae_steps or init is None:  # a new encoder: latents of unit variance; a kept one keeps its scale
        pipe.vae.register_to_config(scaling_factor=latent_scale(means))
    log.info("latent scaling factor %.4f", pipe.vae.config.scaling_factor)
    if cfg.unet_steps:
        train_denoiser(pipe, world, means, stds, cfg, device)
    seconds = time.perf_counter() - started
    save(pipe, out_dir, meta={"config": asdict(cfg), "device": device, "seconds": round(seconds),
                              "init": str(init) if init else None,
                              "torch_threads": torch.get_num_threads()})
    log.info("pretrained in %.0f s; saved to %s", seconds, out_dir)
    return out_dir


def _initial_pipeline(seed: int, init: Path | None):
    """The tiny architecture with seeded random weights, built here; or the weights of a folder in the
    diffusers layout (`make-tiny-model`'s, or an earlier pretraining's, to train it further)."""
    if init is None:
        from trainer.tiny_model import build_random_pipeline

        return build_random_pipeline("tiny", seed=seed)
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(init), safety_checker=None, requires_safety_checker=False)
    return pipe.to(torch.float32)


def save(pipe, out_dir: Path, *, meta: dict) -> None:
    """fp16 weights in the diffusers layout, the tokenizer without its (rebuildable) tokenizer.json."""
    out_dir = Path(out_dir)
    pipe.to("cpu", torch.float16)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    pipe.to(torch.float32)
    slim_tokenizer(out_dir / "tokenizer")
    (out_dir / "toyworld.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def slim_tokenizer(folder: Path) -> None:
    """Replace tokenizer.json (3.5 MB) by the vocab.json + merges.txt it holds (1.5 MB); CLIPTokenizer reads both."""
    tokenizer_json = folder / "tokenizer.json"
    model = json.loads(tokenizer_json.read_text("utf-8"))["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
    tokenizer_json.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--init", type=Path, help="diffusers folder to start from: make-tiny-model's, or an earlier "
                        "pretraining's to train it further (default: build the tiny architecture)")
    for name, value in asdict(PretrainConfig()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    cfg = PretrainConfig(**{k: getattr(args, k) for k in asdict(PretrainConfig())})
    pretrain(args.out, cfg, device=args.device, init=args.init)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
