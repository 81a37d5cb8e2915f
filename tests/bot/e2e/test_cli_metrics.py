"""`dreambot bot --metrics-port` as an operator runs it: a separate process against the emulator, configured
through DREAMBOT_* variables, serving /metrics and writing JSON log lines."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from storage import db as database
from storage import jobs
from storage.config import QueueConfig
from tests.metrics_scrape import free_port, until_scraped, value

ROOT = Path(__file__).resolve().parents[3]


async def test_dreambot_bot_serves_metrics_read_from_the_database_and_logs_json(emu, world, tmp_path):
    """The bot process answers a command, its /metrics shows a job another process queued, and every line
    it logs is a JSON object that never holds the token."""
    port = free_port()
    env = {**os.environ, "DISCORD_TOKEN": emu.token, "DREAMBOT_BOT_API_BASE": emu.api_base,
           "DREAMBOT_BOT_GATEWAY_URL": emu.gateway_url, "DREAMBOT_STORAGE_DATA_DIR": str(tmp_path / "data"),
           "DREAMBOT_LOGGING_FORMAT": "json", "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cli.main", "bot", "--metrics-port", str(port),
                                                cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE)
    try:
        await emu.wait_until_connected(timeout=60)
        record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "subjects")
        await record.wait_for_text("no subjects", timeout=20)
        async with database.connect(tmp_path / "data" / "dreambot.sqlite3") as db:
            await jobs.enqueue(db, kind="generate", user_id=world.alice.id, params={}, cfg=QueueConfig())
        samples = await until_scraped(port, lambda s: value(s, "dreambot_queue_jobs", kind="generate",
                                                            state="queued") == 1, what="the queued job")
        assert value(samples, "dreambot_queue_jobs", kind="train", state="queued") == 0
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    lines = err.decode().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any("metrics on http://127.0.0.1" in r["message"] for r in records)
    assert emu.token not in err.decode()
