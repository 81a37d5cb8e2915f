"""The fleet's processes: the bot and each worker run as `dreambot` commands in their own scratch directory.

Every process gets its settings only through DREAMBOT_* environment variables (the bot also its DISCORD_TOKEN, and
each the AWS_* variables of the object store); nothing is inherited from the test's own DREAMBOT_*, AWS_* or
DISCORD_* environment. Each process's standard output and error go to <its directory>/log.txt.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STOP_SECONDS = 30  # a worker checkpoints and releases its job on SIGTERM; the bot closes its gateway


@dataclass
class Member:
    """One process of the fleet and the directory that is its whole disk."""
    name: str
    home: Path
    proc: subprocess.Popen

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log(self) -> str:
        path = self.home / "log.txt"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def worker_id(self) -> str:
        """The id the worker claims jobs under (trainer.worker: host name and process id)."""
        return f"{socket.gethostname()}:{self.proc.pid}"


@dataclass
class Fleet:
    """Starts `dreambot` processes that share only `shared_env` (the database and the object store)."""
    root: Path
    shared_env: dict[str, str]
    model: Path  # the tiny base model; each process gets its own copy
    members: list[Member] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Member:
        home = self.root / name
        home.mkdir(parents=True)
        # The base model on each host's own disk, at a path of its own: a resume on another host matches the
        # checkpoint's base model by its weights' fingerprint, not by where it lives (trainer.checkpoints).
        shutil.copytree(self.model, home / "model")
        full = {k: v for k, v in os.environ.items() if not k.startswith(("DREAMBOT_", "AWS_", "DISCORD_"))}
        full.update({"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                     "OMP_NUM_THREADS": "1", "TMPDIR": str(home / "tmp"), "HOME": str(home),
                     "DREAMBOT_STORAGE_DATA_DIR": str(home / "data"),
                     "DREAMBOT_TRAINER_BASE_MODEL": str(home / "model"),
                     "DREAMBOT_TRAINER_SAFETY_CHECKER": str(home / "model"),
                     **self.shared_env, **env})
        (home / "tmp").mkdir()
        with open(home / "log.txt", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=home, env=full, stdout=log,
                                    stderr=subprocess.STDOUT)
        member = Member(name=name, home=home, proc=proc)
        self.members.append(member)
        return member

    def by_worker_id(self, worker_id: str | None) -> Member | None:
        return next((m for m in self.members if m.worker_id == worker_id), None)

    def crashed(self) -> list[str]:
        """Members that exited on their own, with the end of their log."""
        return [f"{m.name} exited with {m.proc.returncode}:\n{m.log[-3000:]}" for m in self.members
                if m.proc.poll() is not None and m.proc.returncode != -signal.SIGKILL]

    def stop(self) -> None:
        """SIGTERM to every member still running, then SIGKILL to any that hangs."""
        for m in self.members:
            if m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
        for m in self.members:
            try:
                m.proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait()
