"""`dreambot run`'s worker: restarted with growing delays when it exits, stopped cleanly, never given the token."""

from __future__ import annotations

import json
import logging
import sys
import time

import pytest

from bot import cli

EXITS_AT_ONCE = [sys.executable, "-c", "raise SystemExit(3)"]
RUNS_LONG = [sys.executable, "-c", "import time; time.sleep(60)"]


class FakeTime:
    """Each clock reading moves time on by `ran` seconds, so every worker life lasts `ran`; sleeps are recorded."""

    def __init__(self, *, ran: float = 0.0, stop_after: int = 6) -> None:
        self.now, self.ran, self.stop_after = 0.0, ran, stop_after
        self.delays: list[float] = []

    def clock(self) -> float:
        self.now += self.ran
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.delays.append(seconds)
        self.now += seconds
        return len(self.delays) >= self.stop_after  # True: "stop was asked for", ends run()


def test_worker_environment_has_no_discord_token(tmp_path, monkeypatch):
    """The worker process starts without DISCORD_TOKEN; its other settings reach it."""
    monkeypatch.setenv("DISCORD_TOKEN", "secret-bot-token")
    monkeypatch.setenv("DREAMBOT_STORAGE_DATA_DIR", str(tmp_path))
    dump = tmp_path / "env.json"
    proc = cli.start_worker(command=[sys.executable, "-c",
                                     f"import json, os; open({str(dump)!r}, 'w').write(json.dumps(dict(os.environ)))"])
    assert proc.wait(30) == 0
    env = json.loads(dump.read_text())
    assert "DISCORD_TOKEN" not in env and env["DREAMBOT_STORAGE_DATA_DIR"] == str(tmp_path)


def test_an_explicit_env_cannot_pass_the_token_either():
    """Even a token handed in `env` is stripped."""
    assert "DISCORD_TOKEN" not in cli.worker_process_env({"DISCORD_TOKEN": "x", "HF_TOKEN": "hub"})


def test_a_crashing_worker_is_restarted_with_growing_delays(caplog):
    """A worker that exits at once is restarted after 1, 2, 4, ... s, capped at 60 s; each restart is logged."""
    fake = FakeTime(stop_after=8)
    supervisor = cli.WorkerSupervisor(EXITS_AT_ONCE, clock=fake.clock, sleep=fake.sleep)
    with caplog.at_level(logging.ERROR, logger="bot.cli"):
        supervisor.run()
    assert fake.delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert supervisor.restarts == 7 and "exited with code 3" in caplog.text


def test_a_worker_refusing_its_configuration_is_not_restarted(caplog):
    """A worker that exits with EXIT_CONFIG (its safety checker cannot load, say) is left stopped, with one line."""
    from storage.config import EXIT_CONFIG

    fake = FakeTime(stop_after=8)
    supervisor = cli.WorkerSupervisor([sys.executable, "-c", f"raise SystemExit({EXIT_CONFIG})"],
                                      clock=fake.clock, sleep=fake.sleep)
    with caplog.at_level(logging.ERROR, logger="bot.cli"):
        supervisor.run()
    assert fake.delays == [] and supervisor.restarts == 0
    assert [r.getMessage() for r in caplog.records] == [
        "the worker refused to start until its configuration changes (its message is above); it is not "
        "restarted: fix config.toml, then restart `dreambot run` or start `dreambot worker`"]


def test_a_minute_of_healthy_running_resets_the_delay():
    """A worker that ran a minute before it died is restarted after the first delay again."""
    fake = FakeTime(ran=61.0, stop_after=3)
    cli.WorkerSupervisor(EXITS_AT_ONCE, clock=fake.clock, sleep=fake.sleep).run()
    assert fake.delays == [1, 1, 1]


@pytest.mark.parametrize(("previous", "ran", "delay"), [
    (None, 0, 1), (1, 0, 2), (32, 5, 60), (60, 59, 60), (60, 60, 1),
])
def test_restart_delay(previous, ran, delay):
    """1 s first, doubling to 60 s; back to 1 s after a healthy minute."""
    assert cli.restart_delay(previous, ran) == delay


def test_stop_ends_the_worker_and_restarts_nothing():
    """stop() terminates a running worker at once and no new one is started."""
    supervisor = cli.WorkerSupervisor(RUNS_LONG).start()
    deadline = time.monotonic() + 30
    while supervisor.proc is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc = supervisor.proc
    supervisor.stop()
    assert proc.poll() is not None and supervisor.proc is proc and supervisor.restarts == 0


def test_run_stops_at_once_when_the_base_model_is_not_on_this_machine(tmp_path):
    """`dreambot run` with a never-fetched hub id exits with the configuration code and one line naming fetch-model."""
    import os
    import subprocess
    from pathlib import Path

    from storage.config import EXIT_CONFIG

    env = {**os.environ, "DISCORD_TOKEN": "not-a-real-token", "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(tmp_path / "empty-cache"), "DREAMBOT_STORAGE_DATA_DIR": str(tmp_path / "data"),
           "DREAMBOT_TRAINER_BASE_MODEL": "someone/never-fetched"}
    run = subprocess.run([sys.executable, "-m", "cli.main", "run"], cwd=Path(cli.__file__).resolve().parents[1],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == EXIT_CONFIG
    assert "dreambot fetch-model someone/never-fetched" in run.stderr and "Traceback" not in run.stderr
    assert "not-a-real-token" not in run.stdout + run.stderr
