"""Progress bars, durations and message fitting."""

from __future__ import annotations

import pytest

from bot import render
from storage import jobs, outbox
from storage.config import OutboxConfig, QueueConfig
from storage.subjects import Subject


@pytest.mark.parametrize(("step", "total", "expected"), [
    (0, 10, "[----------] 0%"), (5, 10, "[#####-----] 50%"), (12, 10, "[##########] 100%"), (3, 0, "[----------] 0%"),
])
def test_progress_bar(step, total, expected):
    """The bar fills in proportion and clamps to 0..100%."""
    assert render.progress_bar(step, total, width=10) == expected


@pytest.mark.parametrize(("seconds", "expected"), [
    (None, "unknown"), (45, "45 s"), (90, "1 min 30 s"), (120, "2 min"), (3900, "1 h 5 min"),
])
def test_duration(seconds, expected):
    """Time left reads as seconds, minutes or hours."""
    assert render.duration(seconds) == expected


def test_intake_report_keeps_the_whole_consent_text():
    """However many findings, the consent text is shown in full within 2,000 characters."""
    text = render.intake_report(["x" * 300] * 10, "CONSENT " * 50)
    assert len(text) <= 2000 and ("CONSENT " * 50) in text


def test_status_before_the_first_step_shows_what_is_happening():
    """While class images are made there is no step count yet: the message says what is going on instead."""
    text = render.training_status("rex", step=0, total=0, eta_seconds=None, message="Generating 4 class images.")
    assert "0/0" not in text and "unknown" not in text and "Generating 4 class images." in text


def test_status_during_training_shows_step_time_left_and_loss():
    """Once training runs, the status names the step, the time left and the loss."""
    text = render.training_status("rex", step=40, total=800, eta_seconds=90, loss=0.1234)
    assert "step 40/800, about 1 min 30 s left, loss 0.1234" in text


@pytest.mark.parametrize(("written", "shown"), [
    ("rex in space", "rex in space"),
    ("**bold** _it_ ||spoiler||", r"\*\*bold\*\* \_it\_ \|\|spoiler\|\|"),
    ("# big", r"\# big"),
    ("> quote", r"\> quote"),
    ("[click](https://evil.example)", r"\[click]\(https://evil.example)"),
    ("a [x](http://a) b [y](http://b)", r"a \[x]\(http://a) b [y]\(http://b)"),
    (r"\[a](http://x)", r"\\\[a]\(http://x)"),
    ("@everyone look", "@\u200beveryone look"),
])
def test_user_text_renders_as_written(written, shown):
    """Markdown, masked links (every one, even after a backslash of the user's) and @everyone are made inert."""
    assert render.user_text(written) == shown


@pytest.mark.parametrize("mention", ["<@123456789012345678>", "<@&123456789012345678>", "<#123456789012345678>",
                                     "</imagine:123456789012345678>", "<t:1700000000:R>"])
def test_user_text_breaks_mentions(mention):
    """A user's mention, channel link, command link or timestamp shows as text, not as the thing."""
    assert mention not in render.user_text(f"hi {mention}")


def test_line_builders_escape_what_users_wrote():
    """Subject names, class nouns and the training status show a user's markdown as plain text."""
    subject = Subject(id=1, owner_id=2, guild_id=3, name="**rex**", token="sks", class_noun="dog",
                      state="trained", adapter_artifact_id=None, created_at=0.0, updated_at=0.0)
    assert render.subject_line(subject).startswith(r"**\*\*rex\*\***")
    assert r"Training **\_rex\_**" in render.training_status("_rex_", step=0, total=0, eta_seconds=None)


async def test_job_line_escapes_the_prompt(db):
    """A prompt with a masked link is listed without becoming a link."""
    job = await jobs.enqueue(db, kind="generate", user_id=1, params={"prompt": "[free](http://x.example)"},
                             cfg=QueueConfig())
    line = render.job_line(job, None, "")
    assert r"'\[free]\(http://x.example)'" in line


async def test_outbox_line_shows_the_facts_never_the_payload(db):
    """A parked event reads: id, kind, job, tries, age and the last error (escaped); its payload stays out."""
    event_id = await outbox.post(db, kind="notice", payload={"text": "hunter2"}, user_id=1)
    await outbox.mark_attempt_failed(db, event_id, "Forbidden('**403** Missing Access')", cfg=OutboxConfig())
    event = await outbox.get(db, event_id)
    line = render.outbox_line(event, at=event.created_at + 125)
    assert line == rf"#{event_id} notice, no job, 1 tries, 2 min 5 s old: Forbidden('\*\*403\*\* Missing Access')"


@pytest.mark.parametrize(("flagged", "withheld", "shown"), [
    (0, 0, "<@1>: 2 jobs, 1.0 GPU min, 5 images"),
    (3, 1, "<@1>: 2 jobs, 1.0 GPU min, 5 images, 3 flagged by the safety checker, 1 withheld"),
])
def test_usage_line_adds_flagged_counts_only_when_there_are_any(flagged, withheld, shown):
    """A user with nothing flagged reads as before; otherwise flagged and withheld counts follow."""
    from storage.usage import UsageTotal

    total = UsageTotal(key=1, jobs=2, gpu_seconds=60.0, images=5, flagged=flagged, withheld=withheld)
    assert render.usage_line(total, "<@1>") == shown


@pytest.mark.parametrize(("count", "mode", "expected"), [
    (1, "block", "1 image of job #7 was withheld: the safety checker flagged it, and flagged images are never "
                 "posted here."),
    (3, "spoiler-in-age-restricted", "3 images of job #7 were withheld: the safety checker flagged them, and "
                                     "they are posted only as spoilers in age-restricted channels, and this "
                                     "isn't one."),
])
def test_withheld_notice_says_how_many_and_why(count, mode, expected):
    """The private notice counts the images, says why under the guild's mode, and what to do."""
    text = render.withheld_notice(count, job_id=7, mode=mode)
    assert text.startswith(expected) and "Try a different prompt" in text
