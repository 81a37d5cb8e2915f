"""`dreambot demo`: the whole product offline, in minutes on a CPU, with no token, GPU or download.

The Discord emulator stands in for Discord, the real bot connects to it, a real worker
(`dreambot worker`) trains, and a scripted user trains a subject from its photos and asks for
/imagine. By default the worker runs on the shipped toy-world model (trainer/toyworld/model: flat
shapes on plain backgrounds, 64 px), and the subject is the toy world's yellow-over-black circle, so
the pictures show whether DreamBooth learned it. `--random-model` runs on a tiny random model and a
photographed cat instead (every picture is noise). The conversation prints as it happens, with a
`[demo]` line after each picture saying what it should show; the transcript, grids and images are
left in the output folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from storage.config import BotSettings, Config, load

log = logging.getLogger(__name__)

# The toy-world run: the preset /train asks for, its steps, and what /imagine asks for. Each /imagine prompt puts
# the subject where none of its 4 photos has it (they show it big, near the middle, on red, green, blue and
# white). A prompt that starts with the subject's name gets "a photo of" in front (storage.prompts.expand), so
# both read as the toy world's captions: "a photo of sks circle on a cyan background".
DEMO_PRESET = "balanced"
DEMO_STEPS = 800
DEMO_GRID_EVERY = 200  # a checkpoint and a progress grid every this many steps
DEMO_SUBJECT = "bee ball"
# Held-out backgrounds bench.quality shows the trainer reaching (README, Quality): cyan and grey. Purple, size and
# place, and a neighbour are not reached yet on the shipped toy model.
DEMO_IMAGINE: tuple[tuple[str, str], ...] = (  # (prompt, what its images should show)
    ("bee ball on a cyan background", "the yellow-over-black circle on a cyan background, which no photo has"),
    ("bee ball on a grey background", "the yellow-over-black circle on a grey background, which no photo has"),
)
DEMO_CLASS_SAMPLES = 8  # class images shown in files/class-images.png
OVERVIEW_SCALE, OVERVIEW_WIDTH = 2, 1000  # demo.png: each pixel as 2x2, rows' labels wrapped to this many pixels
OVERVIEW_MAX_BYTES = 190_000  # demo.png is committed as docs/demo.png: under 200 KB

TRAIN_TIMEOUT = 900.0  # seconds for the worker to train (2 CPU cores, one of them maybe busy)
IMAGINE_TIMEOUT = 120.0
IMAGINE_SEED = 7


@dataclass(frozen=True)
class DemoWorld:
    """What the scripted user trains and asks for, and the worker's settings for the model it runs on."""
    model_dir: Path
    checker_dir: Path  # trainer.safety_checker: a folder whose safety_checker/ every image passes
    name: str
    class_noun: str
    preset: str
    photos: list[tuple[str, bytes, str]]  # (filename, bytes, content type) attached to /train
    trainer: dict[str, str]  # [trainer] settings for the worker, by name
    imagine: tuple[tuple[str, str], ...]  # (prompt, what its images should show)
    shows: dict[str, str]  # what the class images, the progress grids and the final grid should show
    about: str  # the first [demo] line


def toy_world(out: Path) -> DemoWorld:
    """The toy world's subject and model, from `dreambot toy-subject` (the bot may not import trainer/)."""
    info = json.loads(_dreambot("toy-subject", str(out / "photos")))
    checker = tiny_model(out)
    photos = [(Path(p).name, Path(p).read_bytes(), "image/png") for p in info["photos"]]
    noun = info["class_noun"]
    return DemoWorld(
        model_dir=Path(info["model"]), checker_dir=checker, name=DEMO_SUBJECT, class_noun=noun, preset=DEMO_PRESET,
        photos=photos, imagine=DEMO_IMAGINE,
        trainer={**{k: str(v) for k, v in info["trainer"].items()},
                 f"presets_{DEMO_PRESET}_steps": str(DEMO_STEPS), "checkpoint_every": str(DEMO_GRID_EVERY),
                 "grid_every": str(DEMO_GRID_EVERY), "grid_resolution": str(info["resolution"]),
                 "final_grid_images": "2"},
        shows={"class": f"one-colour {noun}s on plain backgrounds, none yellow over black: the prior that prior "
                        "preservation keeps",
               "progress": f"'a photo of <token> {noun}' at seeds 0 and 1: a plain {noun} at first, then more and "
                           "more often the yellow-over-black one",
               "final": f"'a photo of <token> {noun}' at seeds 0 and 1: the yellow-over-black {noun}"},
        about=(f"[demo] the worker trains on the shipped toy-world model ({_shown(Path(info['model']))}, "
               f"{info['resolution']} px): shapes on plain backgrounds. alice's {len(photos)} photos show "
               f"one {noun}, yellow over black, which the world never shows. Images pass the tiny safety checker "
               "that `dreambot make-tiny-model` writes, which lets every image pass."))


def random_world(out: Path) -> DemoWorld:
    """A tiny model with random weights and three photographs of a cat: the whole loop, every picture noise."""
    model = tiny_model(out)
    noise = "coloured noise: the model has random weights"
    return DemoWorld(
        model_dir=model, checker_dir=model, name="chelsea", class_noun="cat", preset="quick", photos=demo_photos(),
        imagine=(("chelsea in space", noise),),
        trainer={"resolution": "64", "class_images": "4", "sample_steps": "2", "checkpoint_every": "10",
                 "grid_every": "10", "grid_steps": "2", "final_grid_steps": "2", "presets_quick_steps": "30",
                 "presets_quick_rank": "4", "presets_quick_alpha": "4"},
        shows={"class": noise, "progress": noise, "final": noise},
        about=f"[demo] the worker trains on a tiny model with random weights ({model}): every picture is noise.")


def tiny_model(out: Path) -> Path:
    """`dreambot make-tiny-model` in out/tiny-model, made once: a random model and its pass-through safety checker."""
    model_dir = out / "tiny-model"
    # a folder made before the tiny model shipped a safety checker would make the worker refuse to start
    if not (model_dir / "model_index.json").exists() or not (model_dir / "safety_checker").is_dir():
        print(f"making a tiny model in {model_dir} ...", flush=True)
        _dreambot("make-tiny-model", str(model_dir))
    return model_dir


def _shown(path: Path) -> Path:
    """The path relative to the working directory where it lies below it (the transcript reads the same anywhere)."""
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def _dreambot(*args: str) -> str:
    """A `dreambot` command run with this interpreter; its standard output."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], check=True, stdout=subprocess.PIPE,
                          text=True).stdout


def worker_env(out: Path, world: DemoWorld, database: Path) -> dict[str, str]:
    """DREAMBOT_* overrides for the worker: the world's model and settings, CPU fp32, a quick poll."""
    settings = {"base_model": str(world.model_dir), "safety_checker": str(world.checker_dir), "device": "cpu",
                "mixed_precision": "no", "keep_checkpoints": "2", "poll_seconds": "0.5",
                "default_preset": world.preset, **world.trainer}
    return {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "DREAMBOT_STORAGE_DATA_DIR": str(out / "data"), "DREAMBOT_STORAGE_DB_PATH": str(database),
            "DREAMBOT_STORAGE_DATABASE_URL": "", "DREAMBOT_STORAGE_BLOB_URL": "",
            **{f"DREAMBOT_TRAINER_{k.upper()}": v for k, v in settings.items()}}


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


async def run_demo(out: Path, *, base: Config | None = None, random_model: bool = False) -> int:
    from bot.cli import start_worker, stop_worker
    from bot.emulator import DiscordEmulator, point_discord_py_at

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    database = out / "data" / "dreambot.sqlite3"
    world = random_world(out) if random_model else toy_world(out)
    base = base or load()  # the same config.toml the worker reads: the bot checks presets against it
    # the demo is one machine on its own files, whatever database or object store the config names
    storage = dataclasses.replace(base.storage, data_dir=out / "data", db_path=database, database_url="", blob_url="")
    worker = start_worker(env=worker_env(out, world, database), log_file=out / "worker.log")
    try:
        async with DiscordEmulator(on_event=lambda line: print(line, flush=True)) as emu:
            restore = point_discord_py_at(emu.api_base, emu.gateway_url)
            try:
                settings = BotSettings(api_base=emu.api_base, gateway_url=emu.gateway_url,
                                       train_cooldown_seconds=0, imagine_cooldown_seconds=0)
                # the worker's model, so the bot shows its license (the model card's)
                trainer = dataclasses.replace(base.trainer, base_model=str(world.model_dir),
                                              safety_checker=str(world.checker_dir))
                config = dataclasses.replace(base, bot=settings, storage=storage, trainer=trainer)
                emu.transcript.add(world.about)
                emu.transcript.on_event(_Annotator(emu.transcript, world))
                return await _converse(emu, config, world, out)
            finally:
                emu.transcript.save(out / "transcript.txt")
                restore()
    finally:
        stop_worker(worker)
        print(f"\ntranscript, grids and images are in {out} (worker log: worker.log)", flush=True)


async def _converse(emu, config: Config, world: DemoWorld, out: Path) -> int:
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
                                       options={"name": world.name, "class_noun": world.class_noun,
                                                "preset": world.preset},
                                       attachments=world.photos)
        await train.wait_for(lambda r: r.original is not None and r.original.buttons, 60, "the consent question")
        confirm = next(b["custom_id"] for b in train.original.buttons if b["custom_id"].startswith("consent:confirm"))
        click = await emu.click(train.original, confirm, alice)
        await click.wait_for_text("training is queued", timeout=30)
        final = await emu.wait_for_message(channel, lambda m: "is trained" in m.content, timeout=TRAIN_TIMEOUT)
        _show_class_images(emu, world, out)
        keep = next(b["custom_id"] for b in final.buttons if b.get("label") == "Keep final")
        await (await emu.click(final, keep, alice)).wait_for_text("now uses", timeout=30)
        for prompt, _ in world.imagine:
            posted_before = len(emu.channel_messages(channel))
            imagine = await emu.invoke_slash(guild.id, channel.id, alice, "imagine",
                                             options={"prompt": prompt, "count": 2, "seed": IMAGINE_SEED})
            # The images replace the command's reply, or arrive as a new channel message if its token expired.
            await imagine.wait_for(lambda r, before=posted_before: len(r.files) == 2 or any(
                m.files for m in emu.channel_messages(channel)[before:]), IMAGINE_TIMEOUT, "the images")
        overview = write_overview(out, world, _save_files(emu, channel, out))
        emu.transcript.add(f"[demo] {overview.name}: every picture above in one image, each row headed by what it "
                           "should show")
        return 0
    except TimeoutError as exc:
        print(f"\ndemo stopped: {exc}", flush=True)
        return 1
    finally:
        stop.set()
        await asyncio.gather(bot_task, return_exceptions=True)


class _Annotator:
    """A transcript listener: after each line that posts a picture, a [demo] line saying what it should show."""

    def __init__(self, transcript, world: DemoWorld):
        self.transcript, self.world, self.seen = transcript, world, set()

    def __call__(self, line: str) -> None:
        posted = re.search(r"\[files: ([^\]]*)\]", line)
        if line.startswith("[demo]") or posted is None:
            return
        notes: dict[str, list[str]] = {}  # what to show -> the files that should show it, in order
        for name in (entry.rsplit(" ", 2)[0] for entry in posted[1].split(", ")):  # "bee ball-final-grid.png 12 KB"
            note = self.note(name, line)
            if note and (note, name) not in self.seen:
                self.seen.add((note, name))
                notes.setdefault(note, []).append(name)
        for note, names in notes.items():
            self.transcript.add(f"[demo] {' and '.join(names)} should show {note}")

    def note(self, name: str, line: str) -> str | None:
        if (step := re.match(r"grid-step(\d+)\.", name)) is not None:
            return f"{self.world.shows['progress']} (after {step[1]} steps)"
        if "final-grid" in name:
            return self.world.shows["final"]
        if name.startswith("image-"):
            return next((shows for prompt, shows in self.world.imagine if f"**{prompt}**" in line), None)
        return None


def _show_class_images(emu, world: DemoWorld, out: Path) -> None:
    """The first class images the worker drew for prior preservation, one row in files/class-images.png."""
    from PIL import Image

    made = sorted((out / "data" / "class_images").glob("*/[0-9]*.png"))[:DEMO_CLASS_SAMPLES]
    if not made:
        return
    tiles = [Image.open(p).convert("RGB") for p in made]
    w, h = tiles[0].size
    row = Image.new("RGB", (w * len(tiles), h), "white")
    for i, tile in enumerate(tiles):
        row.paste(tile, (i * w, 0))
    (out / "files").mkdir(exist_ok=True)
    row.save(out / "files" / "class-images.png")
    emu.transcript.add(f"[demo] files/class-images.png: {len(tiles)} of the class images the worker drew for "
                       f"'a photo of a {world.class_noun}'; they should show {world.shows['class']}")


def _save_files(emu, channel, out: Path) -> list[tuple[str, Path]]:
    """Every file the bot posted in the channel, newest version of each message; (message text, path), in order."""
    folder = out / "files"
    folder.mkdir(exist_ok=True)
    saved = []
    for msg in emu.channel_messages(channel):
        for attachment in msg.files:
            path = folder / f"{msg.id}-{attachment.filename}"
            path.write_bytes(attachment.data)
            saved.append((msg.content, path))
    return saved


def write_overview(out: Path, world: DemoWorld, saved: list[tuple[str, Path]]) -> Path:
    """out/demo.png: the run's pictures, a row each for the class images, the subject at each grid and each
    /imagine prompt, every row headed by what it should show (the README's picture: `make demo-picture`)."""
    from PIL import Image, ImageDraw, ImageFont

    grids = [p for _, p in saved if "grid-step" in p.name] + [p for _, p in saved if p.name.endswith("final-grid.png")]
    steps = [m[1] for p in grids if (m := re.search(r"grid-step(\d+)", p.name))]
    rows = [(f"class images, 'a photo of a {world.class_noun}': {world.shows['class']}",
             [out / "files" / "class-images.png"]),
            (f"sample grids after {', '.join(steps)} steps, then the final grid: {world.shows['progress']}", grids)]
    rows += [(f"/imagine {prompt}: {shows}", [p for text, p in saved if f"**{prompt}**" in text and "-image-" in p.name])
             for prompt, shows in world.imagine]
    scale, width, font = OVERVIEW_SCALE, OVERVIEW_WIDTH, ImageFont.load_default(size=15)
    blocks = []
    for label, paths in rows:
        pictures = [Image.open(p).convert("RGB") for p in paths if p.is_file()]
        if not pictures:
            continue
        strip = Image.new("RGB", (sum(p.width for p in pictures) * scale + 8 * (len(pictures) - 1),
                                  max(p.height for p in pictures) * scale), "white")
        x = 0
        for picture in pictures:
            strip.paste(picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST),
                        (x, 0))
            x += picture.width * scale + 8
        lines = textwrap.wrap(label, width=width // 8)
        block = Image.new("RGB", (max(width, strip.width), 20 * len(lines) + 6 + strip.height), "white")
        draw = ImageDraw.Draw(block)
        for i, line in enumerate(lines):
            draw.text((0, 20 * i), line, fill="black", font=font)
        block.paste(strip, (0, 20 * len(lines) + 4))
        blocks.append(block)
    overview = Image.new("RGB", (max(b.width for b in blocks) + 24, sum(b.height + 16 for b in blocks) + 8), "white")
    y = 12
    for block in blocks:
        overview.paste(block, (12, y))
        y += block.height + 16
    path = out / "demo.png"
    overview.save(path, optimize=True)
    if path.stat().st_size > OVERVIEW_MAX_BYTES:  # the README keeps a copy: a 256-colour palette keeps it small
        overview.quantize(256).save(path, optimize=True)
    return path
