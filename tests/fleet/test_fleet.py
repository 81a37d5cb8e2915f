"""The fleet: the bot and 3 workers as separate `dreambot` processes, each on its own scratch directory, sharing
only a PostgreSQL database and an object store. 30 mixed jobs go through the bot; the worker running a training is
SIGKILLed after its first checkpoint (tests.fleet.scenario). Run once per module; each test asserts one promise.
"""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from tests.fleet import scenario
from tests.fleet.conftest import STORE_PREFIX
from tests.fleet.scenario import JOBS, LONG, LONG_STEPS, NAMES, Outcome
from tests.s3_server import SECRET_KEY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, fleet_model, fleet_storage) -> Outcome:
    root = tmp_path_factory.mktemp("fleet")
    return asyncio.run(scenario.run(root, model=fleet_model, shared_env=fleet_storage.env,
                                    database_url=fleet_storage.database_url,
                                    list_checkpoints=lambda job_id: fleet_storage.keys(f"jobs/{job_id}/checkpoints/")))


def test_every_job_succeeds_exactly_once(fleet: Outcome):
    """All 30 jobs succeed; each ran once, the killed training twice."""
    long_job = fleet.trains[LONG]
    assert len(fleet.done) == fleet.in_database == JOBS and sorted(j.kind for j in fleet.done.values()).count("train") == len(NAMES)
    assert {j: d.state for j, d in fleet.done.items()} == dict.fromkeys(fleet.done, "succeeded")
    assert {j: d.attempts for j, d in fleet.done.items()} == {j: 2 if j == long_job else 1 for j in fleet.done}


def test_killed_training_resumes_on_another_worker_from_its_stored_checkpoint(fleet: Outcome):
    """The training whose worker was SIGKILLed mid-run continues on another worker from the newest checkpoint it had
    put in the object store, not from step 0; no disk is shared, so the store is the only way it got there."""
    kill, job_id = fleet.kill, fleet.trains[LONG]
    result = fleet.done[job_id].result
    assert kill.victim.proc.returncode == -signal.SIGKILL and 0 < kill.step_at_kill < LONG_STEPS
    assert kill.rescuer is not None and kill.rescuer.data_dir != kill.victim.data_dir
    assert result["resumed_from"] == kill.steps[-1] > 0 and result["steps"] == LONG_STEPS
    checkpoint = f"{STORE_PREFIX}/jobs/{job_id}/checkpoints/step-{result['resumed_from']:06d}/"
    assert {checkpoint + "state.json", checkpoint + "trainable.safetensors"} <= set(kill.stored)


def test_every_result_is_posted_once(fleet: Outcome):
    """One "is trained" message with its grid per subject; each /imagine reply gets its image once; no other message
    carries a result, and every result event is marked delivered."""
    for name in NAMES:
        trained = [m for m in fleet.messages if f"**{name}** is trained" in m.content]
        assert len(trained) == 1 and len(trained[0].files) == 1, name
    for job_id, prompt in fleet.imagines.items():
        reply = fleet.replies[job_id]
        assert [m.id for m in fleet.messages if f"**{prompt}**" in m.content and m.files] == [reply.id], prompt
        assert [len(v.attachments) for v in reply.history if v.attachments] == [1], prompt  # one edit with the image
    assert sorted(r["job_id"] for r in fleet.results) == sorted(fleet.done)
    assert all(r["delivered_at"] is not None for r in fleet.results)
    assert fleet.emulator_errors == []


def test_json_logs_trace_the_killed_training_on_both_workers(fleet: Outcome):
    """The workers log JSON; the killed training's records carry its job id on the worker that died and on the one
    that finished it, each under its own worker id."""
    job_id = fleet.trains[LONG]
    for member in (fleet.kill.victim, fleet.kill.rescuer):
        records = [json.loads(line) for line in member.log.splitlines() if line.startswith("{")]
        assert {r["worker"] for r in records if r.get("job_id") == job_id} == {member.worker_id}, member.name


def test_no_process_logs_a_secret(fleet: Outcome):
    """Neither the bot token nor the object store's secret key appears in any process's log."""
    for member in fleet.members:
        assert fleet.token not in member.log and SECRET_KEY not in member.log, member.name


def test_no_host_keeps_peoples_files(fleet: Outcome):
    """When the work is done, neither the bot's disk nor a surviving worker's holds a photo, image, checkpoint or
    adapter: the bucket has the only copy, which every deletion reaches. (The killed worker's leftovers go when it
    starts again: tests/storage/test_blobs.py.)"""
    for member in fleet.members:
        if member is fleet.kill.victim:
            continue
        held = [p.relative_to(member.data_dir).as_posix() for folder in ("blobs", "jobs", "subjects")
                for p in (member.data_dir / folder).rglob("*") if p.is_file()]
        assert held == [], member.name
