"""`dreambot run` (the bot and a worker, for a real server), `dreambot bot` (the bot alone, its workers
elsewhere) and `dreambot demo` (offline, emulated).

Takes only cfg.bot and cfg.storage; the worker is a separate process (`dreambot worker`) that reads
its own [trainer] settings, supervised by `run`: restarted with a growing delay when it exits
unexpectedly, and never given the bot's token. Heavy imports happen inside the commands.
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
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from storage import blobs, licenses, metrics, model_families
from storage.config import EXIT_CONFIG, BotSettings, Config, StorageConfig, discord_token

log = logging.getLogger(__name__)

WORKER_STOP_SECONDS = 60  # a worker checkpoints and releases its job on SIGTERM; wait this long for it
RESTART_FIRST_SECONDS = 1.0  # delay before restarting a worker that exited; doubles each time...
RESTART_MAX_SECONDS = 60.0  # ...up to this
HEALTHY_SECONDS = 60.0  # a worker that ran this long was healthy: its next restart starts at the first delay
BOT_SECRETS = ("DISCORD_TOKEN",)  # the bot's alone; a worker needs only the database and its model (HF_TOKEN stays)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the Discord bot and a worker (the token comes from DISCORD_TOKEN)")
    p.add_argument("--no-worker", action="store_true", help="run the bot alone (workers run elsewhere)")
    metrics.add_flags(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("bot", help="run the Discord bot alone, for workers on other machines (`dreambot worker`); "
                                   "the token comes from DISCORD_TOKEN")
    metrics.add_flags(p)
    p.set_defaults(func=cmd_run, no_worker=True)
    p = sub.add_parser("demo", help="offline demo: emulated Discord, the bot, a worker on the toy-world model")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="folder for transcript, grids, images")
    p.add_argument("--random-model", action="store_true",
                   help="a tiny model with random weights and photos of a cat instead: faster, every picture noise")
    p.set_defaults(func=cmd_demo)


def cmd_run(args: argparse.Namespace, cfg: Config) -> int:
    token = discord_token()
    supervisor = None
    if not args.no_worker and (reason := model_families.missing(cfg.trainer.base_model)):
        print(f"dreambot run: {reason}", file=sys.stderr)  # the worker beside the bot could train nothing
        return EXIT_CONFIG
    port = getattr(args, "metrics_port", None)
    if port is not None:
        port = metrics.serve(port, args.metrics_host)
    if not args.no_worker:
        flags = worker_metrics_flags(port, getattr(args, "metrics_host", "127.0.0.1"))
        supervisor = WorkerSupervisor(worker_command(getattr(args, "config", None), flags)).start()
    try:
        asyncio.run(run_bot(cfg.bot, cfg.storage, token, metrics_watch=port is not None,
                            presets=tuple(cfg.trainer.presets),
                            safety_checker_off=cfg.trainer.safety_checker == "off",
                            model_license=model_license(cfg.trainer.base_model, cfg.trainer.model_license),
                            model_refusal=model_refusal(cfg.trainer.base_model)))
    finally:
        if supervisor is not None:
            supervisor.stop()
    return 0


def cmd_demo(args: argparse.Namespace, cfg: Config) -> int:
    from bot.demo import run_demo

    return asyncio.run(run_demo(args.out, base=cfg, random_model=args.random_model))


def model_license(base_model: str, override: str = "") -> licenses.ModelLicense:
    """The base model's license for the bot to show; an unknown one is logged for the operator."""
    found = licenses.resolve(base_model, override)
    if not found.known:
        log.warning("%s", found.operator_message())
    return found


def model_refusal(base_model: str) -> model_families.UnsupportedModel | None:
    """Why /train must refuse every subject: the base model is of a family dreambot does not train. Checked once,
    where the model is readable on the bot's machine; the worker checks again when it loads it."""
    try:
        found = model_families.detect(base_model)
    except model_families.UnsupportedModel as exc:
        log.error("trainer.base_model %s: %s /train refuses until it changes.", base_model, exc)
        return exc
    except model_families.ModelNotReadable as exc:
        log.info("the base model's family is checked by the worker (%s)", exc)
        return None
    log.info("base model %s: %s", base_model, found.label)
    return None


async def run_bot(settings: BotSettings, storage: StorageConfig, token: str, *, stop: asyncio.Event | None = None,
                  metrics_watch: bool = False, **bot_options) -> None:
    """Open the database, hand it to the bot, run until closed (or `stop` is set). `metrics_watch` keeps the
    queue-depth and outbox-age gauges read from the database while it runs. bot.shards picks one gateway
    connection or discord.py's AutoShardedBot."""
    from bot.bot import bot_class, shard_options
    from storage import db as database

    # With storage.blob_url the bot reads images and exports from the object store: refuse to start without it.
    await asyncio.to_thread(blobs.attach(storage).check)
    async with contextlib.AsyncExitStack() as stack:
        db = await stack.enter_async_context(
            database.connect(storage.database, busy_timeout_ms=storage.busy_timeout_ms))
        if metrics_watch:
            await stack.enter_async_context(metrics.watching(storage.database, busy_timeout_ms=storage.busy_timeout_ms))
        bot = bot_class(settings.shards)(db=db, settings=settings, storage=storage,
                                         **shard_options(settings.shards), **bot_options)
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


def worker_command(config_path: str | None = None, flags: Sequence[str] = ()) -> list[str]:
    """`dreambot worker`, run with this interpreter (works inside a venv without PATH)."""
    cmd = [sys.executable, "-m", "cli.main"]
    if config_path:
        cmd += ["--config", str(config_path)]
    return [*cmd, "worker", *flags]


def worker_metrics_flags(bot_port: int | None, host: str) -> list[str]:
    """The worker beside the bot serves its metrics on the port after the bot's, on the same host."""
    if bot_port is None:
        return []
    return ["--metrics-port", str(bot_port + 1 if bot_port < 65535 else 0), "--metrics-host", host]


def worker_process_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus `env`, without the bot's secrets, with the repository importable."""
    root = Path(__file__).resolve().parent.parent
    merged = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in BOT_SECRETS}
    merged["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), merged.get("PYTHONPATH")) if p)
    return merged


def start_worker(*, config_path: str | None = None, env: dict[str, str] | None = None,
                 log_file: Path | None = None, command: Sequence[str] | None = None) -> subprocess.Popen:
    """`dreambot worker` (or `command`) as a child process; its environment never holds DISCORD_TOKEN."""
    with open(log_file, "ab") if log_file else contextlib.nullcontext() as out:  # the child keeps its own copy
        return subprocess.Popen(list(command or worker_command(config_path)), env=worker_process_env(env),
                                stdout=out, stderr=subprocess.STDOUT if out else None)


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


def restart_delay(previous: float | None, ran_seconds: float) -> float:
    """Wait before the next restart: 1 s, doubling to 60 s; back to 1 s after a healthy minute."""
    if previous is None or ran_seconds >= HEALTHY_SECONDS:
        return RESTART_FIRST_SECONDS
    return min(RESTART_MAX_SECONDS, previous * 2)


class WorkerSupervisor:
    """Keeps one worker process running: a worker that exits unasked is restarted after `restart_delay`.

    A worker that exits with EXIT_CONFIG refused to run until its configuration changes (its safety
    checker cannot be loaded, say): it is not restarted, one error line says so, and the bot runs on.

    Runs in a thread beside the bot's event loop (`start`/`stop`), or in the caller (`run`, for tests
    with an injected `clock` and `sleep`). `sleep(seconds)` returns True when it was cut short by `stop`.
    """

    def __init__(self, command: Sequence[str], *, env: Mapping[str, str] | None = None,
                 log_file: Path | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], bool] | None = None) -> None:
        self.command = list(command)
        self.env, self.log_file, self.clock = env, log_file, clock
        self._stopping = threading.Event()
        self.sleep = sleep or self._stopping.wait
        self._lock = threading.Lock()  # stop() never misses a worker started at the same moment
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._thread: threading.Thread | None = None

    def start(self) -> WorkerSupervisor:
        self._thread = threading.Thread(target=self.run, name="worker-supervisor", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Start the worker and restart it whenever it exits, until `stop`."""
        delay: float | None = None
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                started = self.clock()
                try:
                    self.proc = start_worker(env=dict(self.env or {}), log_file=self.log_file, command=self.command)
                except OSError as exc:
                    log.error("could not start the worker (%s): %s", " ".join(self.command), exc)
                    self.proc = None
            code = self.proc.wait() if self.proc is not None else None
            if self._stopping.is_set():
                return
            if code == EXIT_CONFIG:
                log.error("the worker refused to start until its configuration changes (its message is above); it "
                          "is not restarted: fix config.toml, then restart `dreambot run` or start `dreambot worker`")
                return
            ran = self.clock() - started
            delay = restart_delay(delay, ran)
            log.error("the worker exited with code %s after %.0f s; restarting it in %.0f s", code, ran, delay)
            if self.sleep(delay):
                return
            self.restarts += 1

    def stop(self) -> None:
        """Stop the worker as stop_worker does (SIGTERM, then SIGKILL), and restart it no more."""
        self._stopping.set()
        with self._lock:
            proc = self.proc
        if proc is not None:
            stop_worker(proc)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
