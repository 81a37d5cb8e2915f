"""The likeness rules through storage.lifecycle: /imagine and /train refuse and record, minors wait for review."""

from __future__ import annotations

import pytest

from storage import audit, consent, guilds, jobs, lifecycle, subjects
from storage.config import LikenessConfig, QueueConfig
from storage.errors import PromptRefused, SubjectError
from tests.helpers import consented, draft, finish_queued_training, photos, trained

QUEUE = QueueConfig(backoff_base_seconds=0.0, backoff_max_seconds=0.0)


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


def _imagine(prompt: str, *, user_id: int = 1, guild_id: int | None = 9) -> lifecycle.ImageRequest:
    return lifecycle.ImageRequest(user_id=user_id, guild_id=guild_id, channel_id=5, prompt=prompt, count=2)


async def _refusals(db) -> list[audit.Entry]:
    return [e for e in await audit.recent(db, limit=100) if e.action == "likeness.refused"]


async def _trained_minor(db, data, *, name: str = "lily", class_noun: str = "girl"):
    """A minor's subject, approved by a moderator and trained to the end by a simulated worker."""
    held = await consented(db, data, review=False, queue=QUEUE, name=name, class_noun=class_noun)
    assert held.job is None
    queued = await lifecycle.review(db, subject_id=held.subject.id, guild_id=9, moderator_id=7, approve=True,
                                    queue=QUEUE, data_dir=data)
    return await finish_queued_training(db, data, queued.job.id)


# --- /imagine ---------------------------------------------------------------------------------------

async def test_a_persons_subject_is_refused_nudity_and_the_refusal_is_audited(db, data):
    """An empty guild blocklist doesn't matter: 'anna, nude' is refused, recorded for moderators, nothing queued."""
    subject = await trained(db, data, queue=QUEUE, name="anna", class_noun="woman")
    assert await guilds.blocklist(db, 9) == []
    with pytest.raises(PromptRefused, match="a person's likeness.*'nude'.*Reword your prompt"):
        await lifecycle.queue_images(db, _imagine("anna, nude, on a beach"), queue=QUEUE)
    assert [j.kind for j in await jobs.list_jobs(db)] == ["train"]
    [entry] = await _refusals(db)
    assert (entry.actor_id, entry.target_user_id, entry.guild_id, entry.subject_id) == (1, 1, 9, subject.id)
    assert entry.detail == {"rule": "person", "term": "nude", "where": "prompt", "step": "imagine"}


async def test_forget_deletes_the_users_refusals(db, data):
    """The refusal names the user, so /forget deletes it with the rest of their records."""
    await trained(db, data, queue=QUEUE, name="anna", class_noun="woman")
    with pytest.raises(PromptRefused):
        await lifecycle.queue_images(db, _imagine("anna, naked"), queue=QUEUE)
    await lifecycle.forget_user(db, user_id=1, data_dir=data)
    assert await _refusals(db) == []


@pytest.mark.parametrize("prompt", ["anna, n.u.d.e", "anna in ｌｉｎｇｅｒｉｅ", "anna, s 3 x y", "anna nuuude"])
async def test_evasions_are_refused_at_imagine(db, data, prompt):
    """The final prompt is matched with look-alikes, leetspeak, spacing and repeats undone."""
    await trained(db, data, queue=QUEUE, name="anna", class_noun="woman")
    with pytest.raises(PromptRefused):
        await lifecycle.queue_images(db, _imagine(prompt), queue=QUEUE)


async def test_a_dogs_subject_is_not_held_to_the_person_rule(db, data):
    """'rex, naked' is a dog without its collar: queued, nothing recorded."""
    await trained(db, data, queue=QUEUE)
    queued = await lifecycle.queue_images(db, _imagine("rex, naked, in the snow"), queue=QUEUE)
    assert queued.job.state == "queued" and await _refusals(db) == []


async def test_an_innocent_prompt_with_a_person_is_queued(db, data):
    """Words that merely contain a term (Essex, therapist, class) pass."""
    await trained(db, data, queue=QUEUE, name="anna", class_noun="woman")
    queued = await lifecycle.queue_images(db, _imagine("anna visiting her therapist in Essex after class"),
                                          queue=QUEUE)
    assert queued.prompt == "a photo of sks woman visiting her therapist in Essex after class"


async def test_reroll_is_checked_again_under_the_current_rules(db, data):
    """A re-roll of a prompt the operator has since refused (refused_terms) is refused and queues nothing."""
    await trained(db, data, queue=QUEUE, name="anna", class_noun="woman")
    first = await lifecycle.queue_images(db, _imagine("anna covered in gore"), queue=QUEUE)
    with pytest.raises(PromptRefused, match="'gore'"):
        await lifecycle.repeat_images(db, job_id=first.job.id, user_id=1, action="reroll", channel_id=5, queue=QUEUE,
                                      likeness_rules=LikenessConfig(refused_terms=("gore",)))
    assert len(await jobs.list_jobs(db, state="queued")) == 1


async def test_a_minors_subject_is_refused_the_terms_at_imagine(db, data):
    """An approved and trained child's subject still can't be asked for nudity; the message says it's a child."""
    subject = await _trained_minor(db, data)
    with pytest.raises(PromptRefused, match="a child's likeness"):
        await lifecycle.queue_images(db, _imagine("lily, t0pless"), queue=QUEUE)
    [entry] = await _refusals(db)
    assert (entry.subject_id, entry.detail["rule"]) == (subject.id, "minor")


# --- /train -----------------------------------------------------------------------------------------

async def test_a_minors_subject_is_held_for_review_in_a_guild_without_review(db, data):
    """The guild's policy says no review; a child's subject is held anyway, and the log says why."""
    await guilds.set_policy(db, guild_id=9, by=7, review_required=False)
    policy = await guilds.policy(db, 9, default_review=False)
    held = await consented(db, data, review=policy.review_required, queue=QUEUE, name="lily", class_noun="little girl")
    assert (held.job, held.subject.state) == (None, "consented")
    assert await jobs.list_jobs(db) == []
    [entry] = [e for e in await audit.recent(db) if e.action == "subject.held"]
    assert "names a minor" in entry.detail["reason"]


async def test_a_held_minor_is_queued_only_by_a_moderators_approval(db, data):
    """queue_training refuses a minor still waiting for review; the moderator's approval queues it."""
    held = await consented(db, data, review=False, queue=QUEUE, name="tim", class_noun="boy")
    with pytest.raises(SubjectError, match="waiting for a moderator's review"):
        await lifecycle.queue_training(db, subject_id=held.subject.id, queue=QUEUE)
    approved = await lifecycle.review(db, subject_id=held.subject.id, guild_id=9, moderator_id=7, approve=True,
                                      queue=QUEUE, data_dir=data)
    assert approved.job is not None and approved.subject.state == "queued"


@pytest.mark.parametrize(("name", "class_noun", "rule"), [
    ("nude lily", "girl", "a child's likeness"),
    ("s-e-x-y anna", "woman", "a person's likeness"),
])
async def test_a_persons_name_with_a_refused_term_is_refused_at_train(db, data, name, class_noun, rule):
    """The name reaches every prompt: refused before anything is kept, and recorded for moderators."""
    with pytest.raises(PromptRefused, match=f"{rule}.*Choose another name"):
        await draft(db, data, name=name, class_noun=class_noun)
    assert await subjects.list_for_owner(db, 1) == []
    assert not (data / "blobs").exists() or not any((data / "blobs").rglob("*.*"))
    [entry] = await _refusals(db)
    assert (entry.subject_id, entry.detail["where"], entry.detail["step"]) == (None, "name", "train")


# --- `dreambot train` -------------------------------------------------------------------------------

def _local(**kw):
    return dict(owner_id=0, name="lily", class_noun="girl", photos=photos(3), params={}, idempotency_key="k",
                consent_given=True, queue=QUEUE, **kw)


async def test_local_training_of_a_minor_needs_a_named_reviewer(db, data):
    """Without reviewed_by nothing is kept and the message says how to go on."""
    with pytest.raises(SubjectError, match="--reviewed-by"):
        await lifecycle.local_training(db, data_dir=data, **_local())
    assert await subjects.list_for_owner(db, 0) == [] and await jobs.list_jobs(db) == []


async def test_local_training_of_a_minor_records_who_reviewed_it(db, data):
    """With reviewed_by the job is queued, and the audit log names the reviewer beside the consent."""
    subject, job = await lifecycle.local_training(db, data_dir=data, reviewed_by=" Dana  Lee ", **_local())
    assert job.state == "queued" and await consent.active(db, subject.id) is not None
    [entry] = [e for e in await audit.recent(db) if e.action == "subject.approved"]
    assert (entry.subject_id, entry.detail["reviewed_by"]) == (subject.id, "Dana Lee")
