"""The one place settings are read: config.toml, then DREAMBOT_* environment overrides.

Each table becomes a frozen dataclass; each package takes only its own table
(`load().storage`, `load().trainer`, `load().bot`). A wrong value fails at start-up with
a ConfigError naming the key, the value and what is allowed. The Discord token is never
part of the config: it is read from the environment by `discord_token()` alone.
"""

from __future__ import annotations

import dataclasses
import os
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


def _rule(lo=None, hi=None, choices=None):
    return {"lo": lo, "hi": hi, "choices": choices}


def setting(default, *, lo=None, hi=None, choices=None):
    return field(default=default, metadata=_rule(lo, hi, choices))


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
    busy_timeout_ms: int = setting(5000, lo=0)
    photos: PhotoLimits = field(default_factory=PhotoLimits)
    queue: QueueConfig = field(default_factory=QueueConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    likeness: LikenessConfig = field(default_factory=LikenessConfig)

    @property
    def database(self) -> Path:
        return self.db_path or self.data_dir / "dreambot.sqlite3"


@dataclass(frozen=True)
class Preset:
    steps: int = setting(800, lo=1)
    learning_rate: float = setting(1e-4, lo=0.0, hi=1.0)
    rank: int = setting(16, lo=1, hi=512)
    alpha: float = setting(16.0, lo=0.0)
    train_text_encoder: bool = setting(False)


@dataclass(frozen=True)
class TrainerSettings:
    base_model: str = setting("stable-diffusion-v1-5/stable-diffusion-v1-5")
    # the image safety checker: "auto" (the base model's own, else CompVis/stable-diffusion-safety-checker),
    # a hub id or local folder, or "off" (the worker refuses to run when it cannot load one that is not off)
    safety_checker: str = setting("auto")
    model_license: str = setting("")  # the base model's license id (and link); empty: read from its card
    device: str = setting("auto", choices=("auto", "cuda", "cpu"))
    mixed_precision: str = setting("bf16", choices=("bf16", "fp16", "no"))
    resolution: int = setting(512, lo=32, hi=2048)
    default_preset: str = setting("balanced")
    class_images: int = setting(100, lo=0)
    prior_loss_weight: float = setting(1.0, lo=0.0)
    checkpoint_every: int = setting(100, lo=1)
    keep_checkpoints: int = setting(3, lo=1)
    sample_steps: int = setting(25, lo=1)
    guidance_scale: float = setting(7.5, lo=0.0)
    poll_seconds: float = setting(2.0, lo=0.0)
    adapter_cache: int = setting(4, lo=1)
    compile_unet: bool = setting(False)
    learning_rate_scale: float = setting(1.0, lo=0.0, hi=1000.0)
    batch_size: int = setting(1, lo=1, hi=64)
    noise_offset: float = setting(0.0, lo=0.0, hi=1.0)
    watermark: bool = setting(False)  # also embed an invisible watermark in every image (trainer/watermark.py)
    presets: dict[str, Preset] = field(default_factory=lambda: {"balanced": Preset()})


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


@dataclass(frozen=True)
class Config:
    storage: StorageConfig = field(default_factory=StorageConfig)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    bot: BotSettings = field(default_factory=BotSettings)
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
            if typing.get_origin(sub) is dict:  # presets: <preset name>_<field>
                preset_cls = typing.get_args(sub)[1]
                for pf in dataclasses.fields(preset_cls):
                    if tail.endswith("_" + pf.name):
                        return [f.name, tail[: -len(pf.name) - 1], pf.name]
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
