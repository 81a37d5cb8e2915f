"""[logging] format: readable lines or one JSON object per line, the job's fields attached, secrets never written."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from storage import logs

TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"  # shaped like a bot token


@pytest.fixture
def captured():
    """The root logger configured by `logs.configure`, writing into a buffer; (configure, buffer)."""
    out = io.StringIO()
    installed = []

    def configure(fmt: str):
        installed.append(logs.configure(fmt, stream=out))
        return out

    yield configure
    for handler in installed:
        logging.getLogger().removeHandler(handler)


def test_json_format_writes_one_object_per_line_with_the_fields(captured):
    """Each record is one JSON line: time, level, logger, message, and the job, subject and worker in context."""
    out = captured("json")
    with logs.context(job_id=7, subject_id=3, worker="gpu-1:42"):
        logging.getLogger("trainer.worker").info("job %d claimed", 7)
    logging.getLogger("bot").warning("no context here")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert (first["level"], first["logger"], first["message"]) == ("INFO", "trainer.worker", "job 7 claimed")
    assert (first["job_id"], first["subject_id"], first["worker"]) == (7, 3, "gpu-1:42")
    assert first["time"].endswith("+00:00") and "job_id" not in second and second["level"] == "WARNING"


def test_json_format_carries_the_exception_text(captured):
    """log.exception's traceback lands in one field of the same line, not on lines of its own."""
    out = captured("json")
    try:
        raise RuntimeError("the disk is full")
    except RuntimeError:
        logging.getLogger("x").exception("saving failed")
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "saving failed" and "RuntimeError: the disk is full" in record["exception"]


def test_context_follows_into_threads_the_job_starts(captured):
    """A training thread started with asyncio.to_thread logs with its job's id."""
    out = captured("json")

    async def job():
        with logs.context(job_id=11):
            await asyncio.to_thread(logging.getLogger("trainer.train").info, "step 1")
    asyncio.run(job())
    assert json.loads(out.getvalue())["job_id"] == 11


def test_text_format_names_the_job_on_the_line(captured):
    """The readable format keeps its shape and appends [job=.. subject=.. worker=..]."""
    out = captured("text")
    with logs.context(job_id=5, worker="w"):
        logging.getLogger("trainer.worker").info("claimed")
    assert out.getvalue().rstrip().endswith("INFO trainer.worker: claimed [job=5 worker=w]")


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize(("secret", "leak"), [
    ("https://discord.com/api/v10/webhooks/123/aW50ZXJhY3Rpb246MTIz/messages/@original", "aW50ZXJhY3Rpb246MTIz"),
    ("POST /interactions/99/tok-secret-xyz/callback", "tok-secret-xyz"),
    ("https://cdn.discordapp.com/attachments/1/2/a.jpg?ex=65&is=64&hm=deadbeefcafe0123", "deadbeefcafe0123"),
    ("https://bucket.s3.amazonaws.com/a.png?X-Amz-Credential=AKIAXXXX&X-Amz-Signature=f00dbabe1234", "f00dbabe1234"),
    ("postgresql://dreambot:hunter2secret@db:5432/dreambot", "hunter2secret"),
    (f"Authorization: Bot {TOKEN}", TOKEN),
])
def test_secrets_never_reach_the_log(captured, fmt, secret, leak):
    """Tokens in URLs, signed URLs' signatures, URL passwords and bot tokens are replaced, in messages and
    in exception text alike."""
    out = captured(fmt)
    logging.getLogger("bot").info("request to %s failed", secret)
    try:
        raise ConnectionError(f"could not reach {secret}")
    except ConnectionError:
        logging.getLogger("bot").exception("giving up")
    assert leak not in out.getvalue() and "request to" in out.getvalue()


def test_the_discord_token_from_the_environment_is_never_logged(captured, monkeypatch):
    """Whatever its shape, DISCORD_TOKEN's value is replaced by its name."""
    monkeypatch.setenv("DISCORD_TOKEN", "plain-token-123456")
    out = captured("json")
    logging.getLogger("bot").error("login with %s refused", "plain-token-123456")
    assert json.loads(out.getvalue())["message"] == "login with <DISCORD_TOKEN> refused"


def test_an_unknown_format_is_refused_with_the_choices():
    with pytest.raises(ValueError, match='use "text" or "json"'):
        logs.configure("xml")
