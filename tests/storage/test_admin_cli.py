"""The operator commands, run through the real `dreambot` dispatcher."""

from __future__ import annotations

import asyncio

import pytest

from cli.main import main
from storage import db as database
from storage import outbox
from storage.config import OutboxConfig, QueueConfig
from tests.helpers import consented


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DREAMBOT_STORAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


def _seed(data_dir) -> int:
    async def go():
        async with database.connect(data_dir / "dreambot.sqlite3") as db:
            queued = await consented(db, data_dir, owner_id=42, guild_id=1, review=False, queue=QueueConfig())
            return queued.job.id
    return asyncio.run(go())


def test_jobs_list_shows_queued_job(data_dir, capsys):
    """`jobs list` prints one line per job with its state."""
    job_id = _seed(data_dir)
    assert main(["jobs", "list"]) == 0
    assert f"#{job_id}" in capsys.readouterr().out


def test_jobs_show_hides_the_lease_token(data_dir, capsys):
    """`jobs show` prints the job and its queue position but never its lease token."""
    job_id = _seed(data_dir)
    assert main(["jobs", "show", str(job_id)]) == 0
    out = capsys.readouterr().out
    assert '"queue_position": 1' in out and "lease_token" not in out


def test_jobs_cancel_then_retry(data_dir, capsys):
    """A cancelled job can be queued again."""
    job_id = _seed(data_dir)
    assert main(["jobs", "cancel", str(job_id)]) == 0
    assert main(["jobs", "retry", str(job_id)]) == 0
    assert "queued again (position 1)" in capsys.readouterr().out


def test_unknown_job_is_a_clear_error(data_dir, capsys):
    """Asking for a job that does not exist exits 1 with a message, not a traceback."""
    _seed(data_dir)
    assert main(["jobs", "show", "999"]) == 1
    err = capsys.readouterr().err
    assert "no job #999" in err and "Traceback" not in err


def test_forget_reports_what_went(data_dir, capsys):
    """`forget --user` deletes the user's rows and says how many."""
    _seed(data_dir)
    assert main(["forget", "--user", "42"]) == 0
    assert "deleted 1 subjects" in capsys.readouterr().out


def test_bad_config_value_exits_2(data_dir, monkeypatch, capsys):
    """A wrong setting stops the command with the key named."""
    monkeypatch.setenv("DREAMBOT_STORAGE_BUSY_TIMEOUT_MS", "-1")
    assert main(["db", "migrate"]) == 2
    assert "storage.busy_timeout_ms = '-1'" in capsys.readouterr().err


def _parked(data_dir, *, payload: dict | None = None) -> int:
    """A notice Discord refused until it was parked (park_after 1)."""
    async def go():
        async with database.connect(data_dir / "dreambot.sqlite3") as db:
            event_id = await outbox.post(db, kind="notice", payload=payload or {}, user_id=42, guild_id=1)
            await outbox.mark_attempt_failed(db, event_id, "DiscordServerError('503 Service Unavailable')",
                                             cfg=OutboxConfig(park_after=1))
            return event_id
    return asyncio.run(go())


def test_outbox_list_shows_parked_messages_without_their_payload(data_dir, capsys):
    """`outbox list` prints id, kind, tries and the last error of a parked message, never its payload."""
    event_id = _parked(data_dir, payload={"text": "hunter2"})
    assert main(["outbox", "list"]) == 0
    out = capsys.readouterr().out
    assert f"#{event_id}" in out and "notice" in out and "503 Service Unavailable" in out and "hunter2" not in out


@pytest.mark.parametrize("which", ["id", "--all"])
def test_outbox_retry_unparks(data_dir, capsys, which):
    """`outbox retry ID` and `outbox retry --all` make the message due now; it leaves the parked list."""
    event_id = _parked(data_dir)
    assert main(["outbox", "retry", str(event_id) if which == "id" else "--all"]) == 0
    assert main(["outbox", "list"]) == 0
    out = capsys.readouterr().out
    assert "due now" in out and "no parked messages" in out


def test_outbox_retry_of_an_unknown_message_is_a_clear_error(data_dir, capsys):
    """Retrying a message that is not waiting exits 1 with a message, not a traceback."""
    _parked(data_dir)
    assert main(["outbox", "retry", "999"]) == 1
    err = capsys.readouterr().err
    assert "no undelivered outbox event #999" in err and "Traceback" not in err
