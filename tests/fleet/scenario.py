"""The fleet scenario: the bot and 3 workers as `dreambot` processes; 6 users train a dog each and ask for 4 images
of it, all through the emulated Discord (30 jobs); the worker running the one long training is SIGKILLed after its
first checkpoint. `run` returns what the tests assert on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from bot.emulator import DiscordEmulator, Message
from storage import artifacts, jobs, outbox
from storage import db as database
from tests.bot.e2e.conftest import photo
from tests.fleet.processes import Fleet, Member

WORKERS = 3
NAMES = ("rex", "fido", "luna", "milo", "bella", "coco")  # one user each; each trains one dog
LONG = "rex"  # trained on the long preset: the training whose worker is killed
QUICK_STEPS, LONG_STEPS, CHECKPOINT_EVERY = 6, 60, 10
IMAGINES = 4  # per user, once the subject is trained (a prompt must name one): its adapter, made on any worker
JOBS = len(NAMES) * (1 + IMAGINES)
PHOTOS = ("chelsea", "astronaut", "rocket")
CLICKS, CLICK_WAIT = 3, 15.0  # Confirm is clicked again when no answer comes in CLICK_WAIT seconds
LEASE_SECONDS = 5  # a killed worker's job is reclaimed this long after its last heartbeat
FLEET_TIMEOUT = 240.0  # seconds for all jobs to end and every result to be delivered (2 busy CPU cores)

WORKER_ENV = {f"DREAMBOT_TRAINER_{k.upper()}": str(v) for k, v in {
    "device": "cpu", "mixed_precision": "no", "resolution": 64, "class_images": 1, "sample_steps": 1,
    "crops_per_photo": 1, "checkpoint_every": CHECKPOINT_EVERY, "keep_checkpoints": 2, "grid_every": 0,
    "grid_steps": 1, "final_grid_steps": 1, "final_grid_images": 1, "poll_seconds": 0.2, "memory": "off",
    "default_preset": "quick", "presets_quick_steps": QUICK_STEPS, "presets_quick_rank": 4,
    "presets_quick_alpha": 4, "presets_balanced_steps": LONG_STEPS, "presets_balanced_rank": 4,
    "presets_balanced_alpha": 4}.items()} | {"DREAMBOT_STORAGE_QUEUE_LEASE_SECONDS": str(LEASE_SECONDS),
                                          "DREAMBOT_LOGGING_FORMAT": "json"}  # as for a fleet's log collector


def bot_env(emu: DiscordEmulator) -> dict[str, str]:
    """The bot's process: the emulator's URLs and token, no cooldowns, room for every user's jobs in the queue."""
    return {"DISCORD_TOKEN": emu.token, "DREAMBOT_BOT_API_BASE": emu.api_base,
            "DREAMBOT_BOT_GATEWAY_URL": emu.gateway_url, "DREAMBOT_BOT_TRAIN_COOLDOWN_SECONDS": "0",
            "DREAMBOT_BOT_IMAGINE_COOLDOWN_SECONDS": "0", "DREAMBOT_STORAGE_QUEUE_MAX_QUEUED_PER_USER": "10",
            "DREAMBOT_STORAGE_QUEUE_LEASE_SECONDS": str(LEASE_SECONDS)}


@dataclass
class Kill:
    """What the test saw around the SIGKILL of the worker running the long training."""
    victim: Member
    steps: list[int]  # checkpoint steps the job had recorded when its worker died
    step_at_kill: int  # the job's progress then
    stored: list[str]  # the object store's keys under the job's checkpoints then
    rescuer: Member | None = None  # the worker that claimed the job's second attempt


@dataclass
class Outcome:
    trains: dict[str, int]  # subject name -> its train job
    imagines: dict[int, str]  # generate job -> its prompt
    replies: dict[int, Message]  # generate job -> the /imagine reply its images must replace
    done: dict[int, jobs.Job]  # every job, once the fleet settled
    in_database: int  # how many jobs the database holds
    results: list[dict]  # the outbox's train_done and images events: job_id, delivered_at
    messages: list[Message]  # the channel, current versions (each with its history)
    kill: Kill
    members: list[Member]
    token: str  # the bot's Discord token
    emulator_errors: list = field(default_factory=list)


async def train(emu, guild, channel, user, name: str) -> int:
    """/train with three photos, Confirm on the consent question; the queued job's id."""
    preset = "balanced" if name == LONG else "quick"
    record = await emu.invoke_slash(guild.id, channel.id, user, "train",
                                    options={"name": name, "class_noun": "dog", "preset": preset},
                                    attachments=[(f"{p}.jpg", photo(p), "image/jpeg") for p in PHOTOS])
    await record.wait_for(lambda r: r.original is not None and r.original.buttons, 60, f"{name}'s consent question")
    confirm = next(b["custom_id"] for b in record.original.buttons if b["custom_id"].startswith("consent:confirm"))
    # discord.py routes a button to its view only once the send that carried it has returned, so a click landing
    # in between is dropped, as a person's would be: like a person, click again when nothing happens.
    clicks = []
    for _ in range(CLICKS):
        clicks.append(await emu.click(record.original, confirm, user))
        with contextlib.suppress(TimeoutError):
            text = await emu.wait_for(lambda: next((t for c in clicks for t in c.texts if "queued as job" in t), None),
                                      timeout=CLICK_WAIT, what=f"{name}'s training to be queued")
            return int(re.search(r"queued as job #?(\d+)", text)[1])
    raise TimeoutError(f"{CLICKS} clicks on {name}'s Confirm queued nothing")


async def imagine(emu, guild, channel, user, prompt: str, records: dict) -> None:
    """/imagine; records[job id] = (prompt, its interaction), whose reply the images must replace."""
    record = await emu.invoke_slash(guild.id, channel.id, user, "imagine", options={"prompt": prompt, "count": 1})
    await record.wait_for_response(timeout=60)
    queued = [m for t in record.texts if (m := re.search(r"queued as job #(\d+)", t))]
    assert queued, f"/imagine {prompt!r} was answered {record.texts}"
    records[int(queued[0][1])] = (prompt, record)


async def kill_mid_training(db, fleet: Fleet, job_id: int, *, list_checkpoints, timeout: float) -> Kill:
    """SIGKILL the worker running `job_id` once the job has recorded a checkpoint; then follow the job until another
    worker holds it. `list_checkpoints(job_id)` lists the object store's keys under the job's checkpoints."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"job {job_id} recorded no checkpoint in {timeout:.0f} s"
        job = await jobs.get(db, job_id)
        assert job.state in ("queued", "running"), f"the long training ended ({job.state}) before it could be killed"
        if job.state == "running" and await artifacts.for_job(db, job_id, "checkpoint"):
            break
        await asyncio.sleep(0.05)
    victim = fleet.by_worker_id(job.lease_owner)
    assert victim is not None, f"job {job_id} is held by {job.lease_owner}, no worker of this fleet"
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    job = await jobs.get(db, job_id)
    assert (job.state, job.attempts) == ("running", 1), "the kill came after the training ended"
    kill = Kill(victim=victim, steps=sorted(a.meta["step"] for a in await artifacts.for_job(db, job_id, "checkpoint")),
                step_at_kill=job.progress_step, stored=await asyncio.to_thread(list_checkpoints, job_id))
    while kill.rescuer is None:  # the lease runs out, a live worker reclaims the job
        assert time.monotonic() < deadline, f"no worker took job {job_id} over in {timeout:.0f} s"
        job = await jobs.get(db, job_id)
        if job.attempts == 2 and job.state == "running":
            kill.rescuer = fleet.by_worker_id(job.lease_owner)
        assert job.state not in jobs.FINAL, f"job {job_id} ended ({job.state}) unseen by the test"
        await asyncio.sleep(0.05)
    return kill


async def wait_until_settled(db, fleet: Fleet, job_ids: list[int], *, timeout: float) -> None:
    """Every job in a final state and every outbox event delivered; fails early if a fleet process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert not (dead := fleet.crashed()), "\n\n".join(dead)
        states = [(await jobs.get(db, j)).state for j in job_ids]
        if all(s in jobs.FINAL for s in states) and not await outbox.pending(db, at=math.inf):
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"not settled in {timeout:.0f} s: job states {states}")


async def run(root: Path, *, model: Path, shared_env: dict[str, str], database_url: str,
              list_checkpoints) -> Outcome:
    """Start the fleet, drive the users, kill the long training's worker, wait until every result is delivered."""
    fleet = Fleet(root, shared_env=shared_env, model=model)
    records: dict[int, tuple[str, object]] = {}  # generate job -> (prompt, its /imagine interaction)
    killing: asyncio.Task | None = None
    async with DiscordEmulator() as emu, database.connect(database_url) as db:  # migrated before any process starts
        guild = emu.add_guild("fleet")
        channel = emu.channel_named(guild, "general")
        users = {name: emu.add_member(guild, f"{name}-owner") for name in NAMES}
        try:
            fleet.start("bot", ["bot"], bot_env(emu))
            for n in range(1, WORKERS + 1):
                fleet.start(f"worker-{n}", ["worker"], WORKER_ENV)
            await emu.wait_for(lambda: emu.synced_commands(), timeout=60, what="the bot to sync its commands")
            trains = dict(zip(NAMES, await asyncio.gather(*(train(emu, guild, channel, users[n], n)
                                                            for n in NAMES)), strict=True))
            killing = asyncio.create_task(kill_mid_training(db, fleet, trains[LONG], list_checkpoints=list_checkpoints,
                                                             timeout=120))

            async def after_training(name: str) -> None:
                await emu.wait_for_message(channel, lambda m: f"**{name}** is trained" in m.content,
                                           timeout=FLEET_TIMEOUT)
                for k in range(IMAGINES):
                    await imagine(emu, guild, channel, users[name], f"{name} on a beach, picture {k}", records)

            await asyncio.gather(*(after_training(n) for n in NAMES))
            kill = await killing
            job_ids = [*trains.values(), *records]
            await wait_until_settled(db, fleet, job_ids, timeout=FLEET_TIMEOUT)
            results = await database.fetch_all(
                db, "SELECT job_id, kind, delivered_at FROM outbox WHERE kind IN ('train_done', 'images')")
            return Outcome(trains=trains, imagines={j: p for j, (p, _) in records.items()},
                           replies={j: r.original for j, (_, r) in records.items()},
                           done={j: await jobs.get(db, j) for j in job_ids},
                           in_database=len(await jobs.list_jobs(db, limit=10 * JOBS)), results=[{k: r[k] for k in ("job_id", "kind", "delivered_at")} for r in results],
                           messages=emu.channel_messages(channel), kill=kill, members=fleet.members,
                           token=emu.token, emulator_errors=list(emu.internal_errors))
        finally:
            if killing is not None:
                killing.cancel()
            fleet.stop()
            emu.transcript.save(root / "transcript.txt")  # beside each process's log.txt
