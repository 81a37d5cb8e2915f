"""`dreambot demo`: the whole product offline, in minutes on a CPU, with no token, GPU or download.

The Discord emulator stands in for Discord, the real bot connects to it, a real worker
(`dreambot worker`) trains on a tiny random model, and a scripted user trains a subject from real
photographs (scikit-image's) and asks for /imagine. The conversation prints as it happens; the
transcript, grids and images are left in the output folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import subprocess
import sys
from pathlib import Path

from storage.config import BotSettings, Config, load

log = logging.getLogger(__name__)

TRAIN_TIMEOUT = 480.0  # seconds for the worker to train on the tiny model (2 CPU cores)
IMAGINE_TIMEOUT = 120.0
SUBJECT, CLASS_NOUN = "chelsea", "cat"


def worker_env(out: Path, model_dir: Path, database: Path) -> dict[str, str]:
    """DREAMBOT_* overrides that make the worker quick on a CPU: tiny model, 64 px, few steps."""
    return {
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "DREAMBOT_STORAGE_DATA_DIR": str(out / "data"), "DREAMBOT_STORAGE_DB_PATH": str(database),
        "DREAMBOT_TRAINER_BASE_MODEL": str(model_dir), "DREAMBOT_TRAINER_DEVICE": "cpu",
        "DREAMBOT_TRAINER_MIXED_PRECISION": "no", "DREAMBOT_TRAINER_RESOLUTION": "64",
        "DREAMBOT_TRAINER_CLASS_IMAGES": "4", "DREAMBOT_TRAINER_SAMPLE_STEPS": "2",
        "DREAMBOT_TRAINER_CHECKPOINT_EVERY": "10", "DREAMBOT_TRAINER_KEEP_CHECKPOINTS": "2",
        "DREAMBOT_TRAINER_GRID_EVERY": "10", "DREAMBOT_TRAINER_GRID_STEPS": "2", "DREAMBOT_TRAINER_FINAL_GRID_STEPS": "2",
        "DREAMBOT_TRAINER_POLL_SECONDS": "0.5", "DREAMBOT_TRAINER_DEFAULT_PRESET": "quick",
        "DREAMBOT_TRAINER_PRESETS_QUICK_STEPS": "30", "DREAMBOT_TRAINER_PRESETS_QUICK_RANK": "4",
        "DREAMBOT_TRAINER_PRESETS_QUICK_ALPHA": "4",
    }


def demo_photos() -> list[tuple[str, bytes, str]]:
    """Three real photographs of one cat (scikit-image's chelsea): the whole picture and two crops."""
    from storage.sample_photos import sample_image

    cat = sample_image("chelsea").convert("RGB")  # 451 x 300
    views = {"chelsea.jpg": cat, "chelsea-left.jpg": cat.crop((0, 0, 300, 300)),
             "chelsea-face.jpg": cat.crop((120, 0, 420, 300)).transpose(0)}
    out = []
    for name, image in views.items():
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=92)
        out.append((name, buf.getvalue(), "image/jpeg"))
    return out


async def run_demo(out: Path, *, base: Config | None = None) -> int:
    from bot.cli import start_worker, stop_worker
    from bot.emulator import DiscordEmulator, point_discord_py_at

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_dir, database = out / "tiny-model", out / "data" / "dreambot.sqlite3"
    # a folder made before the tiny model shipped a safety checker would make the worker refuse to start
    if not (model_dir / "model_index.json").exists() or not (model_dir / "safety_checker").is_dir():
        print(f"making a tiny model in {model_dir} ...", flush=True)
        subprocess.run([sys.executable, "-m", "cli.main", "make-tiny-model", str(model_dir)], check=True)
    base = base or load()  # the same config.toml the worker reads: the bot checks presets against it
    storage = dataclasses.replace(base.storage, data_dir=out / "data", db_path=database)
    worker = start_worker(env=worker_env(out, model_dir, database), log_file=out / "worker.log")
    try:
        async with DiscordEmulator(on_event=lambda line: print(line, flush=True)) as emu:
            restore = point_discord_py_at(emu.api_base, emu.gateway_url)
            try:
                settings = BotSettings(api_base=emu.api_base, gateway_url=emu.gateway_url,
                                       train_cooldown_seconds=0, imagine_cooldown_seconds=0)
                # the worker's model, so the bot shows its license (the tiny model's card)
                trainer = dataclasses.replace(base.trainer, base_model=str(model_dir))
                config = dataclasses.replace(base, bot=settings, storage=storage, trainer=trainer)
                return await _converse(emu, config, out)
            finally:
                emu.transcript.save(out / "transcript.txt")
                restore()
    finally:
        stop_worker(worker)
        print(f"\ntranscript, grids and images are in {out} (worker log: worker.log)", flush=True)


async def _converse(emu, config: Config, out: Path) -> int:
    from bot.cli import model_license, run_bot

    guild = emu.add_guild("dreamers")
    channel = emu.channel_named(guild, "general")
    alice = emu.add_member(guild, "alice")
    stop = asyncio.Event()
    bot_task = asyncio.create_task(run_bot(config.bot, config.storage, emu.token, stop=stop, poll_seconds=0.2,
                                           presets=tuple(config.trainer.presets),
                                           safety_checker_off=config.trainer.safety_checker == "off",
                                           model_license=model_license(config.trainer.base_model,
                                                                       config.trainer.model_license)))
    try:
        await emu.wait_for(lambda: emu.synced_commands(), timeout=30, what="the bot to sync its commands")
        train = await emu.invoke_slash(guild.id, channel.id, alice, "train",
                                       options={"name": SUBJECT, "class_noun": CLASS_NOUN, "preset": "quick"},
                                       attachments=demo_photos())
        await train.wait_for(lambda r: r.original is not None and r.original.buttons, 60, "the consent question")
        confirm = next(b["custom_id"] for b in train.original.buttons if b["custom_id"].startswith("consent:confirm"))
        click = await emu.click(train.original, confirm, alice)
        await click.wait_for_text("training is queued", timeout=30)
        final = await emu.wait_for_message(channel, lambda m: "is trained" in m.content, timeout=TRAIN_TIMEOUT)
        keep = next(b["custom_id"] for b in final.buttons if b.get("label") == "Keep final")
        await (await emu.click(final, keep, alice)).wait_for_text("now uses", timeout=30)
        posted_before = len(emu.channel_messages(channel))
        imagine = await emu.invoke_slash(guild.id, channel.id, alice, "imagine",
                                         options={"prompt": f"{SUBJECT} in space", "count": 2, "seed": 7})
        # The images replace the command's reply, or arrive as a new channel message if its token expired.
        await imagine.wait_for(lambda r: len(r.files) == 2 or any(
            m.files for m in emu.channel_messages(channel)[posted_before:]), IMAGINE_TIMEOUT, "the images")
        _save_files(emu, channel, out)
        return 0
    except TimeoutError as exc:
        print(f"\ndemo stopped: {exc}", flush=True)
        return 1
    finally:
        stop.set()
        await asyncio.gather(bot_task, return_exceptions=True)


def _save_files(emu, channel, out: Path) -> None:
    """Every file the bot posted in the channel, newest version of each message."""
    folder = out / "files"
    folder.mkdir(exist_ok=True)
    for msg in emu.channel_messages(channel):
        for attachment in msg.files:
            (folder / f"{msg.id}-{attachment.filename}").write_bytes(attachment.data)
