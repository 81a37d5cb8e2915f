"""Text and embeds the bot shows: progress bars, time estimates, lists, audit entries. No I/O."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence

import discord

from storage.audit import Entry
from storage.consent import Consent
from storage.jobs import Job
from storage.outbox import Event
from storage.subjects import Subject
from storage.usage import UsageTotal

BAR_WIDTH = 20
MAX_CONTENT = 2000
_MENTION_LIKE = re.compile(r"<(?=[@#/:]|a:|t:)")  # <@user> <@&role> <#channel> </cmd:id> <:emoji:id> <t:..>


def user_text(text: str) -> str:
    """Text a user wrote, made inert for a message: no markdown, masked links or mentions render.

    Markdown is escaped (backslashes too, so none can undo an escape); `](` is broken up because
    discord.py escapes only the first of several masked links; `@everyone` and `<@id>`-style
    mentions get a zero-width space. Escapes don't show in Discord, so the text reads as written.
    Clip before escaping: a cut can't then split an escape.
    """
    text = discord.utils.escape_markdown(text).replace("](", "]\\(")
    return _MENTION_LIKE.sub("<\u200b", discord.utils.escape_mentions(text))


def progress_bar(step: int, total: int, width: int = BAR_WIDTH) -> str:
    """`[#########-----------] 45%` for step of total (clamped to 0..100%)."""
    fraction = 0.0 if total <= 0 else min(1.0, max(0.0, step / total))
    filled = round(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {round(fraction * 100)}%"


def duration(seconds: float | None) -> str:
    """A rough, readable duration: '45 s', '3 min 20 s', '1 h 5 min'; 'unknown' for None."""
    if seconds is None or seconds < 0:
        return "unknown"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {(s % 3600) // 60} min"


def training_status(name: str, *, step: int, total: int, eta_seconds: float | None, message: str = "",
                    loss: float | None = None) -> str:
    lines = [f"Training **{user_text(name)}**: {progress_bar(step, total)}"]
    if total:  # before the first step (class images, encoding) there is no step count to show yet
        lines.append(f"step {step}/{total}, about {duration(eta_seconds)} left")
        if loss is not None:
            lines[-1] += f", loss {loss:.4f}"
    if message:
        lines.append(user_text(message[:200]))
    return "\n".join(lines)


def clip(text: str, limit: int = MAX_CONTENT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def intake_report(lines: Sequence[str], consent_text: str) -> str:
    """Per-photo findings, then the exact consent text, within one message."""
    consent = f"\n\n{consent_text}\n\nPress **Confirm** to agree and start, or **Cancel** to delete the photos."
    body = "Your photos:\n" + "\n".join(f"- {line}" for line in lines)
    return clip(body, MAX_CONTENT - len(consent)) + consent


def subject_line(subject: Subject) -> str:
    adapter = "" if subject.adapter_artifact_id is None else ", trained"
    name, noun = user_text(subject.name), user_text(subject.class_noun)
    return f"**{name}** ({noun}): {subject.state.replace('_', ' ')}{adapter} [#{subject.id}]"


def job_line(job: Job, position: int | None, subject_name: str) -> str:
    what = subject_name if job.kind == "train" else job.params.get("prompt", "")
    where = f", position {position} in the queue" if position else ""
    progress = f", step {job.progress_step}/{job.progress_total}" if job.state == "running" and job.progress_total else ""
    return f"#{job.id} {job.kind} '{user_text(clip(str(what), 60))}': {job.state}{where}{progress}"


def when(at: float | None) -> str:
    if at is None:
        return "-"
    return f"<t:{int(at)}:f>"


def consent_line(c: Consent) -> str:
    status = f"revoked {when(c.revoked_at)} by <@{c.revoked_by}>" if c.revoked_at else "active"
    return (f"subject #{c.subject_id}, <@{c.user_id}>, text {c.text_version} (sha256 {c.text_sha256[:12]}), "
            f"given {when(c.granted_at)}, {status}")


def usage_line(total: UsageTotal, label: str) -> str:
    line = f"{label}: {total.jobs} jobs, {total.gpu_seconds / 60:.1f} GPU min, {total.images} images"
    if total.flagged or total.withheld:
        line += f", {total.flagged} flagged by the safety checker, {total.withheld} withheld"
    return line


NSFW_POLICY = {
    "block": "never posted (block)",
    "spoiler-in-age-restricted": "posted as spoilers in age-restricted channels only, withheld elsewhere "
                                 "(spoiler-in-age-restricted)",
}
CHECKER_OFF = ("Safety checker: **off**. The operator set `trainer.safety_checker = \"off\"`, so images are "
               "not checked and nothing is flagged or withheld: every image is posted as made. Ask the operator "
               "to turn it back on (\"auto\").")


def nsfw_policy_line(mode: str, *, checker_off: bool) -> str:
    """How /mod policy shows what happens to images the safety checker flags."""
    line = f"Images the safety checker flags: {NSFW_POLICY.get(mode, mode)}"
    return f"{line}\n{CHECKER_OFF}" if checker_off else line


def withheld_notice(count: int, *, job_id: int | None, mode: str) -> str:
    """Told privately to the user whose images the safety checker flagged and nobody was shown."""
    what = f"{count} image{'s' if count != 1 else ''}" + (f" of job #{job_id}" if job_id else "")
    why = ("flagged images are never posted here" if mode == "block"
           else "they are posted only as spoilers in age-restricted channels, and this isn't one")
    return (f"{what} {'were' if count != 1 else 'was'} withheld: the safety checker flagged "
            f"{'them' if count != 1 else 'it'}, and {why}. Try a different prompt or seed; moderators see "
            "these counts in /mod usage.")


def audit_line(e: Entry) -> str:
    who = f"<@{e.actor_id}>" if e.actor_id else "system"
    target = f" on <@{e.target_user_id}>" if e.target_user_id else ""
    subject = f" subject #{e.subject_id}" if e.subject_id else ""
    return f"{when(e.at)} {who}: {e.action}{target}{subject}"


def outbox_line(e: Event, *, at: float) -> str:
    """A parked event for moderators and operators: what, whose job, tries, age and the last error; no payload."""
    job = f"job #{e.job_id}" if e.job_id else "no job"
    error = user_text(clip(e.last_error or "-", 160))
    return f"#{e.id} {e.kind}, {job}, {e.attempts} tries, {duration(at - e.created_at)} old: {error}"


def audit_embed(action: str, *, actor_id: int | None, fields: dict[str, str] | None = None) -> discord.Embed:
    """The embed posted to the audit channel; photos are never attached."""
    embed = discord.Embed(title=action, timestamp=datetime.datetime.now(datetime.UTC),
                          colour=discord.Colour.dark_gold())
    embed.add_field(name="by", value=f"<@{actor_id}>" if actor_id else "system")
    for name, value in (fields or {}).items():
        embed.add_field(name=name, value=clip(str(value), 1000) or "-", inline=False)
    return embed


def paginate(lines: Sequence[str], empty: str, limit: int = MAX_CONTENT) -> str:
    """Lines joined up to the message limit, with a count of those left out."""
    if not lines:
        return empty
    out: list[str] = []
    size = 0
    for n, line in enumerate(lines):
        if size + len(line) + 40 > limit:
            out.append(f"... and {len(lines) - n} more")
            break
        out.append(line)
        size += len(line) + 1
    return "\n".join(out)
