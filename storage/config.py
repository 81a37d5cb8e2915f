"""The one place settings are read: config.toml, then DREAMBOT_* environment overrides.

Each table becomes a frozen dataclass; each package takes only its own table
(`load().storage`, `load().trainer`, `load().bot`). A wrong value fails at start-up with
a ConfigError naming the key, the value and what is allowed. The Discord token is never
part of the config: it is read from the environment by `discord_token()` alone.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIX = "DREAMBOT_"
CONFIG_ENV = "DREAMBOT_CONFIG"
REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.toml"


class ConfigError(ValueError):
    """A setting is missing, unknown or out of range; the message says which and what is allowed."""


EXIT_CONFIG = 78  # sysexits' EX_CONFIG: a process refused to run until its configuration changes (no restart helps)


def _rule(lo=None, hi=None, choices=None, help="", aliases=None):
    return {"lo": lo, "hi": hi, "choices": choices, "help": help, "aliases": aliases}


def setting(default, *, lo=None, hi=None, choices=None, help="", aliases=None):
    """A config field: its default, its allowed range or choices, and `help`, the comment config.toml repeats.
    `aliases` maps other spellings (compared as lower-case text) to allowed values, e.g. a setting's old values."""
    return field(default=default, metadata=_rule(lo, hi, choices, help, aliases))


def help_text(cls, name: str) -> str:
    """The help a setting was declared with (tests check config.toml's comment against it)."""
    return next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name)


@dataclass(frozen=True)
class PhotoLimits:
    min_per_subject: int = setting(3, lo=1, hi=50)
    max_per_subject: int = setting(10, lo=1, hi=50)
    max_file_mb: int = setting(20, lo=1, hi=200)
    max_pixels: int = setting(40_000_000, lo=65_536, hi=89_478_485)  # Pillow refuses more than that anyway
    min_side: int = setting(256, lo=64)
    warn_side: int = setting(512, lo=64)
    blur_threshold: float = setting(60.0, lo=0.0)
    duplicate_distance: int = setting(6, lo=0, hi=64)
    max_side: int = setting(2048, lo=256, hi=8192)  # kept photos are downscaled to this longest side
    user_quota_mb: int = setting(200, lo=1)  # most stored photo megabytes per user


@dataclass(frozen=True)
class QueueConfig:
    lease_seconds: int = setting(60, lo=1)
    max_queued_per_user: int = setting(3, lo=1)
    train_max_attempts: int = setting(3, lo=1, hi=100)
    generate_max_attempts: int = setting(3, lo=1, hi=100)
    backoff_base_seconds: float = setting(10.0, lo=0.0)
    backoff_max_seconds: float = setting(600.0, lo=0.0)


@dataclass(frozen=True)
class RetentionConfig:
    generated_days: int = setting(30, lo=0)
    failed_job_photos_days: int = setting(7, lo=0)


@dataclass(frozen=True)
class OutboxConfig:
    base_seconds: float = setting(2.0, lo=0.0)  # first retry delay of a refused event; doubles
    max_seconds: float = setting(300.0, lo=0.0)  # longest retry delay; a parked event's cadence
    park_after: int = setting(8, lo=1)  # failed tries after which an event is parked (kept and listed)


# Class nouns that name a person, and those that name a minor (each also a person): see storage/likeness.py.
PERSON_NOUNS = (
    "person", "people", "man", "men", "woman", "women", "face", "faces", "human", "humans", "guy", "guys",
    "gal", "lady", "ladies", "gentleman", "male", "female", "adult", "individual", "self", "me", "selfie",
    "portrait", "husband", "wife", "partner", "boyfriend", "girlfriend", "mother", "mom", "mum", "father",
    "dad", "parent", "grandmother", "grandma", "grandfather", "grandpa", "brother", "sister", "sibling",
    "friend", "actor", "actress", "bride", "groom",
)
MINOR_NOUNS = (
    "child", "children", "kid", "kids", "boy", "boys", "girl", "girls", "baby", "babies", "toddler",
    "toddlers", "infant", "newborn", "teen", "teens", "teenager", "teenagers", "teenage", "preteen", "tween",
    "minor", "minors", "schoolgirl", "schoolboy", "schoolchild", "youngster", "juvenile", "adolescent", "son",
    "daughter",
)


@dataclass(frozen=True)
class LikenessConfig:
    person_nouns: tuple[str, ...] = setting(PERSON_NOUNS)  # a subject of these: no sexual or nudity terms
    minor_nouns: tuple[str, ...] = setting(MINOR_NOUNS)  # a subject of these: also always reviewed
    refused_terms: tuple[str, ...] = setting(())  # refused besides the built-in list, which always applies


@dataclass(frozen=True)
class StorageConfig:
    data_dir: Path = setting(Path("./data"))
    db_path: Path | None = setting(None)
    database_url: str = setting("", help=(
        "empty: the SQLite file above; postgresql://user@host:port/dbname: a PostgreSQL server that a fleet of "
        "workers shares (the password from PGPASSWORD or ~/.pgpass, never here)"))
    blob_url: str = setting("", help=(
        "empty: files live under data_dir; s3://bucket/prefix: photos, adapters, checkpoints and images live in "
        "an S3-compatible object store (endpoint from AWS_ENDPOINT_URL, credentials from AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY) and data_dir is only this host's scratch cache"))
    busy_timeout_ms: int = setting(5000, lo=0)
    photos: PhotoLimits = field(default_factory=PhotoLimits)
    queue: QueueConfig = field(default_factory=QueueConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    likeness: LikenessConfig = field(default_factory=LikenessConfig)

    @property
    def database(self) -> str | Path:
        """What `storage.db.connect` opens: the PostgreSQL URL when one is set, else the SQLite file."""
        return self.database_url or self.db_path or self.data_dir / "dreambot.sqlite3"


@dataclass(frozen=True)
class Preset:
    steps: int = setting(800, lo=1, help="optimizer steps")
    learning_rate: float = setting(1e-4, lo=0.0, hi=1.0, help="peak AdamW learning rate")
    rank: int = setting(16, lo=1, hi=512, help="LoRA rank")
    alpha: float = setting(16.0, lo=0.0, help="LoRA alpha (scale = alpha / rank)")
    train_text_encoder: bool = setting(False, help="also train a LoRA on the text encoder")
    flip: bool = setting(True, help=(
        "also train on mirror images of the photos and class images; faces turns it off (a face is not symmetric), "
        "and so should a subject with text or a logo"))


# Presets for SDXL base (1024 px): the diffusers SDXL DreamBooth LoRA example trains 500 steps at 1e-4; its larger
# UNet takes fewer steps than SD 1.x for the same likeness.
SDXL_PRESETS = {
    "quick": Preset(steps=300, learning_rate=1e-4, rank=8, alpha=8.0, train_text_encoder=False),
    "balanced": Preset(steps=500, learning_rate=1e-4, rank=16, alpha=16.0, train_text_encoder=False),
    "faces": Preset(steps=800, learning_rate=5e-5, rank=32, alpha=32.0, train_text_encoder=True, flip=False),
}


@dataclass(frozen=True)
class FamilySettings:
    resolution: int = setting(512, lo=32, hi=2048, help="training and generation resolution in pixels")
    presets: dict[str, Preset] = field(default_factory=dict)  # replace [trainer.presets] of the same name


def _families() -> dict[str, FamilySettings]:
    return {"sd1": FamilySettings(512), "sd2": FamilySettings(768),
            "sdxl": FamilySettings(1024, presets=dict(SDXL_PRESETS))}


COMPILE_MODES = ("off", "default", "reduce-overhead")  # trainer.compile_unet: off, or torch.compile's mode
COMPILE_ALIASES = {"false": "off", "no": "off", "0": "off", "true": "default", "yes": "default", "1": "default"}


def compile_mode(value) -> str:
    """trainer.compile_unet's mode for a value new or old (a job row's config may still say true or false)."""
    mode = COMPILE_ALIASES.get(str(value).lower(), value)
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile_unet = {value!r} is not allowed: choose one of {', '.join(COMPILE_MODES)} "
                          "(or false, true).")
    return mode


# Each trainer setting is declared here once: its default, its rule and its help, which is config.toml's comment
# (tests/storage/test_config.py fails when they differ). trainer.config.TrainConfig takes the values by name.
@dataclass(frozen=True)
class TrainerSettings:
    base_model: str = setting("stable-diffusion-v1-5/stable-diffusion-v1-5", help=(
        "hub id (read from the local cache: `dreambot fetch-model` downloads it), local diffusers folder or "
        "single-file .safetensors"))
    safety_checker: str = setting("auto", help=(
        "image safety checker every image and sample grid passes before it is posted: \"auto\" (the base model's "
        "own safety_checker/, else CompVis/stable-diffusion-safety-checker from the local cache, which `dreambot "
        "fetch-model` downloads), a hub id or local folder, or \"off\". The worker refuses to start when it cannot "
        "load it; \"off\" runs unchecked and /mod policy says so"))
    model_license: str = setting("", help=(
        "the base model's license id, optionally followed by its link (\"my-license https://...\"); empty: read "
        "from the model card or file, or known for SD 1.x/2.x/XL. Shown to users at /train and /subjects and "
        "written into exported LoRAs"))
    device: str = setting("auto", choices=("auto", "cuda", "cpu"), help="auto, cuda or cpu")
    mixed_precision: str = setting("bf16", choices=("bf16", "fp16", "no"), help=(
        "on CUDA: bf16 or fp16 base weights (LoRA parameters stay fp32); CPU always uses fp32"))
    resolution: int = setting(0, lo=0, hi=2048, help=(
        "training and generation resolution in pixels; 0: the base model family's ([trainer.families]: SD 1.x 512, "
        "SD 2.x 768, SDXL 1024)"))
    default_preset: str = setting("balanced", help="preset used when a user names none")
    class_images: int = setting(100, lo=0, help="class images generated for prior preservation")
    prior_loss_weight: float = setting(1.0, lo=0.0, help="weight of the prior-preservation loss")
    seed: int = setting(0, lo=0, hi=2**31 - 1, help=(
        "seeds each training run: its noise, timesteps, photo crops and mirror images (the same seed and photos "
        "give the same adapter on the same machine)"))
    checkpoint_every: int = setting(100, lo=1, help=(
        "steps between checkpoints (resume points; /train offers them as fallbacks)"))
    keep_checkpoints: int = setting(3, lo=1, help="checkpoints kept on disk per job")
    sample_steps: int = setting(25, lo=1, help=(
        "sampler steps for class images, and for sample grids whose steps setting is 0"))
    guidance_scale: float = setting(7.5, lo=0.0, help="classifier-free guidance for samples and generation")
    # Sample grids cost 10% of the default preset's training time at most. By a FLOP model of SD 1.5 at 512 px
    # (a training step: 2 samples x 1.7 TFLOP UNet forward+backward; a sampler step: 2 x 0.85 TFLOP with
    # classifier-free guidance; a VAE decode: 2.5 TFLOP; all scaling with the pixels), "balanced" trains
    # 800 x 3.4 = 2720 TFLOP. Progress grids at 200, 400 and 600: 3 x 2 images x (20 x 1.7 + 2.5) x 1/4 (256 px)
    # = 55 TFLOP; the final grid: 5 images x (20 x 1.7 + 2.5) at 512 px = 183 TFLOP. Together 238 TFLOP, 8.7%
    # (the old default, 10 images at 25 steps and 512 px every 100 steps, cost 3600 TFLOP: 132%).
    grid_every: int = setting(200, lo=0, help=(
        "steps between progress grids, drawn at the checkpoints whose step is a multiple of it; 0: only the final "
        "grid"))
    grid_images: int = setting(2, lo=1, hi=100, help=(
        "images in each progress grid: up to 2, the instance prompt at that many seeds; more, one row per prompt "
        "(the instance prompt, then 4 evaluation prompts) at as many seeds (up to 2) as fill whole rows"))
    grid_steps: int = setting(20, lo=0, hi=200, help="sampler steps for progress grids; 0: sample_steps")
    grid_resolution: int = setting(0, lo=0, hi=2048, help=(
        "size of each progress-grid image in pixels; 0: half the training resolution (a multiple of 8)"))
    final_grid_images: int = setting(5, lo=1, hi=100, help=(
        "images in the final grid, laid out as grid_images is: 5 shows the instance prompt and the 4 evaluation "
        "prompts at one seed, 10 at two"))
    final_grid_steps: int = setting(20, lo=0, hi=200, help="sampler steps for the final grid; 0: sample_steps")
    final_grid_resolution: int = setting(0, lo=0, hi=2048, help=(
        "size of each final-grid image in pixels; 0: the training resolution"))
    poll_seconds: float = setting(2.0, lo=0.0, help="how often an idle worker looks for work")
    adapter_cache: int = setting(4, lo=1, help="adapters kept loaded in a generating worker (LRU)")
    compile_unet: str = setting("off", choices=COMPILE_MODES, aliases=COMPILE_ALIASES, help=(
        "torch.compile the UNet for training: \"off\", \"default\" or \"reduce-overhead\" (on CUDA also captures "
        "the step in CUDA graphs: fewer kernel launches); false and true still mean \"off\" and \"default\". The "
        "first steps of a job compile (about a minute), later steps run faster"))
    learning_rate_scale: float = setting(1.0, lo=0.0, hi=1000.0, help=(
        "multiplies every preset's learning rate; presets are tuned per family, a base model of another size may "
        "need another step"))
    batch_size: int = setting(1, lo=1, hi=64, help=(
        "subject photos per optimizer step (as many class images join them); more costs memory and time per step. "
        "With memory = \"auto\" the most the memory plan may choose"))
    memory: str = setting("auto", choices=("auto", "off"), help=(
        "\"auto\": choose the batch (up to batch_size), gradient checkpointing and 8-bit AdamW from the model "
        "family and the GPU's free memory, and step down the same ladder on out-of-memory; \"off\": use "
        "batch_size as given, with plain AdamW"))
    vae: str = setting("", help=(
        "an fp16-safe VAE (hub id or local folder, e.g. madebyollin/sdxl-vae-fp16-fix) for SDXL in half "
        "precision; empty: SDXL's own VAE runs in fp32"))
    snr_gamma: float = setting(0.0, lo=0.0, hi=100.0, help=(
        "Min-SNR-gamma loss weighting (Hang et al. 2023): each example's error, on the x0 scale, is weighted by "
        "min(SNR, gamma), so the easy low-noise timesteps stop dominating the gradient; 0 is off, the paper uses 5"))
    crops_per_photo: int = setting(4, lo=1, hi=32, help=(
        "views cached per subject photo: the centre crop, and random crops at 1-1.25x scale whose windows move "
        "over the whole photo (the long side too), drawn from the training seed; each photo stays equally likely. "
        "Encoding takes this many times longer (once per job); 1: the centre crop only"))
    noise_offset: float = setting(0.0, lo=0.0, hi=1.0, help=(
        "offset noise (Guttenberg 2023, kohya's noise_offset): a per-image, per-channel shift added to the "
        "training noise, so the model learns to move a whole image's colour; 0 is off, SD LoRA trainers often "
        "use 0.05-0.1"))
    watermark: bool = setting(False, help=(
        "also embed an invisible watermark (invisible-watermark, 48 bits in the brightness) in every image and "
        "grid; it survives a JPEG re-encode, `dreambot verify` reads it; an image needs 48 blocks of 8x8 pixels "
        "to carry it (56x56 does, 48x48 does not). Metadata marks (IPTC \"trainedAlgorithmicMedia\" in XMP) "
        "are always written"))
    single_file_config: str = setting("", help=(
        "for a single-file base_model: a diffusers folder or cached hub id whose configs describe it; empty: the "
        "configs dreambot ships for the family read from its keys (SD 1.x, SD 2.x: v-prediction unless its "
        "modelspec or a \"512\"/\"base\" file name says epsilon, SDXL base)"))
    presets: dict[str, Preset] = field(default_factory=lambda: {"balanced": Preset()})
    families: dict[str, FamilySettings] = field(default_factory=_families)


@dataclass(frozen=True)
class BotSettings:
    api_base: str = setting("https://discord.com/api/v10")
    gateway_url: str = setting("wss://gateway.discord.gg")
    audit_channel_id: int = setting(0, lo=0)
    max_attachment_mb: int = setting(10, lo=1, hi=500)
    train_cooldown_seconds: int = setting(60, lo=0)
    imagine_cooldown_seconds: int = setting(10, lo=0)
    images_per_request: int = setting(4, lo=1, hi=10)
    review_required: bool = setting(False)
    shards: str = setting("", help=(
        "empty: one gateway connection; \"auto\": discord.py's AutoShardedBot with the shard count Discord "
        "recommends; a number: that many shards"))


@dataclass(frozen=True)
class LoggingSettings:
    format: str = setting("text", choices=("text", "json"), help=(
        "text: one readable line per record; json: one JSON object per line (time, level, logger, message, "
        "and job_id, subject_id, worker when known) for a log collector"))


@dataclass(frozen=True)
class Config:
    storage: StorageConfig = field(default_factory=StorageConfig)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    bot: BotSettings = field(default_factory=BotSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    source: str = field(default="(defaults)", compare=False)


def discord_token() -> str:
    """The bot token, from DISCORD_TOKEN only; never stored in the config or logged."""
    token = os.environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        raise ConfigError("DISCORD_TOKEN is not set: export the bot token from the Discord developer portal.")
    return token


def load(path: str | Path | None = None, env: typing.Mapping[str, str] | None = None) -> Config:
    """Read config.toml (DREAMBOT_CONFIG, ./config.toml or the repository's), apply env overrides, validate."""
    env = os.environ if env is None else env
    candidates = [Path(path)] if path else [
        Path(p) for p in (env.get(CONFIG_ENV), "config.toml", REPO_CONFIG) if p]
    chosen = next((p for p in candidates if p.is_file()), None)
    if path and chosen is None:
        raise ConfigError(f"config file {path} does not exist.")
    raw: dict = {}
    if chosen is not None:
        try:
            raw = tomllib.loads(chosen.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{chosen} is not valid TOML: {exc}") from None
    _apply_env(raw, env)
    cfg = _build(Config, raw, "")
    cfg = dataclasses.replace(cfg, source=str(chosen) if chosen else "(defaults)")
    _check_cross_fields(cfg)
    return cfg


def _apply_env(raw: dict, env: typing.Mapping[str, str]) -> None:
    """DREAMBOT_STORAGE_PHOTOS_MIN_SIDE=300 sets raw['storage']['photos']['min_side'] = '300'."""
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        path = _env_path(name[len(ENV_PREFIX):].lower(), Config)
        if path is None:
            raise ConfigError(f"{name} does not name a setting: see config.toml for the keys.")
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value


def _env_path(rest: str, cls) -> list[str] | None:
    """Match the longest field name first, since names contain underscores."""
    hints = typing.get_type_hints(cls)
    for f in sorted(dataclasses.fields(cls), key=lambda f: -len(f.name)):
        if f.name == "source":
            continue
        if rest == f.name:
            return [f.name]
        if rest.startswith(f.name + "_"):
            tail = rest[len(f.name) + 1:]
            sub = hints[f.name]
            if dataclasses.is_dataclass(sub):
                inner = _env_path(tail, sub)
                return [f.name, *inner] if inner else None
            if typing.get_origin(sub) is dict:  # presets, families: <name>_<path inside it>
                item_cls = typing.get_args(sub)[1]
                parts = tail.split("_")
                for i in range(1, len(parts)):
                    inner = _env_path("_".join(parts[i:]), item_cls)
                    if inner:
                        return [f.name, "_".join(parts[:i]), *inner]
    return None


def _build(cls, raw, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"[{prefix.rstrip('.')}] must be a table, got {raw!r}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - {"source"}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown setting {prefix}{unknown[0]}: allowed keys here are {', '.join(sorted(names))}.")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        key = prefix + f.name
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            values[f.name] = _build(hint, raw[f.name], key + ".")
        elif typing.get_origin(hint) is dict:
            item_cls = typing.get_args(hint)[1]
            table = raw[f.name]
            if not isinstance(table, dict) or not table:
                raise ConfigError(f"{key} must be a non-empty table of {item_cls.__name__} tables.")
            values[f.name] = {n: _build(item_cls, t, f"{key}.{n}.") for n, t in table.items()}
        else:
            values[f.name] = _coerce(key, raw[f.name], hint, f.metadata)
    return cls(**values)


def _coerce(key: str, value, hint, rule):
    aliases = (rule or {}).get("aliases")
    if aliases:
        value = aliases.get(str(value).lower(), value)
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if optional and value in ("", None):
        return None
    try:
        if base is bool:
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                value = value.lower() in ("true", "1", "yes")
            elif not isinstance(value, bool):
                raise ValueError
            out = value
        elif base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(str(value).replace("_", "")) if isinstance(value, str) else int(value)
        elif base is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        elif typing.get_origin(base) is tuple:  # a TOML list of strings; from the environment, comma-separated
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ValueError
            out = tuple(i.strip().lower() for i in items if i.strip())
        elif base is Path:
            if not isinstance(value, str) or not value:
                raise ValueError
            out = Path(value)
        else:
            if not isinstance(value, str):
                raise ValueError
            out = value
    except (TypeError, ValueError):
        raise ConfigError(f"{key} = {value!r} is not a valid {base.__name__}.") from None
    lo, hi, choices = (rule or {}).get("lo"), (rule or {}).get("hi"), (rule or {}).get("choices")
    if choices and out not in choices:
        raise ConfigError(f"{key} = {value!r} is not allowed: choose one of {', '.join(choices)}.")
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        allowed = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ConfigError(f"{key} = {value!r} is out of range: it must be {allowed}.")
    return out


def _check_cross_fields(cfg: Config) -> None:
    st = cfg.storage
    if st.database_url and not st.database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"storage.database_url = {st.database_url!r} is not a PostgreSQL URL: use "
                          "postgresql://user@host:port/dbname, or leave it empty for the SQLite file.")
    if st.blob_url and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?", st.blob_url):
        raise ConfigError(f"storage.blob_url = {st.blob_url!r} is not an object store URL: use "
                          "s3://bucket/prefix (a valid bucket name), or leave it empty to keep files under data_dir.")
    shards = cfg.bot.shards.strip().lower()
    if shards not in ("", "auto") and not (shards.isdigit() and 1 <= int(shards) <= 4096):
        raise ConfigError(f"bot.shards = {cfg.bot.shards!r} is not allowed: leave it empty for one connection, "
                          "or use \"auto\" or a shard count from 1 to 4096.")
    p = cfg.storage.photos
    if p.min_per_subject > p.max_per_subject:
        raise ConfigError(f"storage.photos.min_per_subject = {p.min_per_subject} exceeds "
                          f"max_per_subject = {p.max_per_subject}: make the minimum the smaller.")
    if p.warn_side < p.min_side:
        raise ConfigError(f"storage.photos.warn_side = {p.warn_side} is below min_side = {p.min_side}: "
                          "the warning size must be at least the refusal size.")
    t = cfg.trainer
    if t.default_preset not in t.presets:
        raise ConfigError(f"trainer.default_preset = {t.default_preset!r} is not one of the presets: "
                          f"{', '.join(sorted(t.presets))}.")
