"""`dreambot run` (the bot and a worker, for a real server) and `dreambot demo` (offline, emulated).

Takes only cfg.bot and cfg.storage; the worker is a separate process (`dreambot worker`) that reads
its own [trainer] settings. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from storage.config import BotSettings, Config, StorageConfig, discord_token

log = logging.getLogger(__name__)

WORKER_STOP_SECONDS = 60  # a worker checkpoints and releases its job on SIGTERM; wait this long for it


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the Discord bot and a worker (the token comes from DISCORD_TOKEN)")
    p.add_argument("--no-worker", action="store_true", help="run the bot alone (workers run elsewhere)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("demo", help="offline demo: emulated Discord, the bot, a worker on a tiny model")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="folder for transcript, grids, images")
    p.set_defaults(func=cmd_demo)


def cmd_run(args: argparse.Namespace, cfg: Config) -> int:
    token = discord_token()
    worker = None if args.no_worker else start_worker(config_path=getattr(args, "config", None))
    try:
        asyncio.run(run_bot(cfg.bot, cfg.storage, token))
    finally:
        if worker is not None:
            stop_worker(worker)
    return 0


def cmd_demo(args: argparse.Namespace, cfg: Config) -> int:
    from bot.demo import run_demo

    return asyncio.run(run_demo(args.out, base=cfg))


async def run_bot(settings: BotSettings, storage: StorageConfig, token: str, *, stop: asyncio.Event | None = None,
                  **bot_options) -> None:
    """Open the database, hand it to the bot, run until closed (or `stop` is set)."""
    from bot.bot import DreamBot
    from storage import db as database

    async with database.connect(storage.database, busy_timeout_ms=storage.busy_timeout_ms) as db:
        bot = DreamBot(db=db, settings=settings, storage=storage, **bot_options)
        async with bot:
            runner = asyncio.create_task(bot.start(token))
            waits = {runner} | ({asyncio.create_task(stop.wait())} if stop is not None else set())
            loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(bot.close()))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            await bot.close()
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)


def worker_command(config_path: str | None = None) -> list[str]:
    """`dreambot worker`, run with this interpreter (works inside a venv without PATH)."""
    cmd = [sys.executable, "-m", "cli.main"]
    if config_path:
        cmd += ["--config", str(config_path)]
    return [*cmd, "worker"]


def start_worker(*, config_path: str | None = None, env: dict[str, str] | None = None,
                 log_file: Path | None = None) -> subprocess.Popen:
    out = open(log_file, "ab") if log_file else None  # noqa: SIM115 - closed with the process
    root = Path(__file__).resolve().parent.parent
    merged = {**os.environ, **(env or {})}
    merged["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), merged.get("PYTHONPATH")) if p)
    return subprocess.Popen(worker_command(config_path), env=merged, stdout=out, stderr=subprocess.STDOUT if out
                            else None)


def stop_worker(proc: subprocess.Popen) -> None:
    """SIGTERM (the worker checkpoints and releases its job), then SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(WORKER_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
