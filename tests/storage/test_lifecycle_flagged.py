"""storage.lifecycle.worker with the safety checker's verdicts: flagged images marked, withheld ones counted."""

from __future__ import annotations

import pytest

from storage import artifacts, jobs, lifecycle, outbox, usage
from storage.config import QueueConfig
from tests.helpers import consented, trained

QUEUE = QueueConfig(backoff_base_seconds=0.0, backoff_max_seconds=0.0)


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


async def _generating(db, data, n: int):
    """A trained subject's /imagine of n images, claimed by a worker."""
    await trained(db, data, queue=QUEUE)
    await lifecycle.queue_images(db, lifecycle.ImageRequest(user_id=1, guild_id=9, channel_id=5,
                                                            prompt="rex in space", count=n), queue=QUEUE)
    job = await jobs.claim(db, worker_id="w", lease_seconds=60, kinds=("generate",))
    assert job is not None
    return job


def _files(data, job, n: int, grid: bool = True) -> tuple[list[str], str | None]:
    paths = [f"jobs/{job.id}/images/{i}.png" for i in range(n)]
    grid_path = f"jobs/{job.id}/grid.png" if grid else None
    for rel in [*paths, *([grid_path] if grid_path else [])]:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(rel.encode())
    return paths, grid_path


async def _images_event(db, job_id: int) -> outbox.Event:
    return next(e for e in await outbox.pending(db, limit=100) if e.job_id == job_id and e.kind == "images")


async def test_flagged_images_and_their_grid_are_marked(db, data):
    """Each flagged image's artifact, and the grid holding it, get meta nsfw; the others don't."""
    job = await _generating(db, data, 3)
    paths, grid = _files(data, job, 3)
    await lifecycle.finish_generation(db, job_id=job.id, lease_token=job.lease_token, image_paths=paths,
                                      grid_path=grid, seeds=[1, 2, 3], prompt="p", data_dir=data, gpu_seconds=1.0,
                                      flagged=[False, True, False])
    images = await artifacts.for_job(db, job.id, "image")
    assert [a.meta.get("nsfw", False) for a in images] == [False, True, False]
    assert [a.meta["seed"] for a in images] == [1, 2, 3]
    (grid_artifact,) = await artifacts.for_job(db, job.id, "grid")
    assert grid_artifact.meta.get("nsfw") is True


async def test_unflagged_results_carry_no_mark(db, data):
    """Without verdicts (or all clean), no artifact is marked and the event says nothing was withheld."""
    job = await _generating(db, data, 2)
    paths, grid = _files(data, job, 2)
    await lifecycle.finish_generation(db, job_id=job.id, lease_token=job.lease_token, image_paths=paths,
                                      grid_path=grid, seeds=[1, 2], prompt="p", data_dir=data, gpu_seconds=1.0)
    assert not any("nsfw" in a.meta for a in await artifacts.for_job(db, job.id))
    assert (await _images_event(db, job.id)).payload["withheld"] == 0


async def test_images_event_carries_the_worker_withheld_count(db, data):
    """Images the worker dropped before saving are counted in the event's payload and in the job's result."""
    job = await _generating(db, data, 3)
    paths, grid = _files(data, job, 1)
    done = await lifecycle.finish_generation(db, job_id=job.id, lease_token=job.lease_token, image_paths=paths,
                                             grid_path=grid, seeds=[7], prompt="p", data_dir=data, gpu_seconds=1.0,
                                             flagged=[False], withheld=2)
    event = await _images_event(db, job.id)
    assert (event.payload["withheld"], len(event.payload["image_artifact_ids"])) == (2, 1)
    assert done.state == "succeeded" and done.result["withheld"] == 2


async def test_everything_withheld_still_finishes_without_a_grid(db, data):
    """With every image dropped there is no grid: the job succeeds and the event has no artifacts to show."""
    job = await _generating(db, data, 2)
    done = await lifecycle.finish_generation(db, job_id=job.id, lease_token=job.lease_token, image_paths=[],
                                             grid_path=None, seeds=[], prompt="p", data_dir=data, gpu_seconds=1.0,
                                             withheld=2)
    payload = (await _images_event(db, job.id)).payload
    assert done.state == "succeeded" and await artifacts.for_job(db, job.id) == []
    assert (payload["image_artifact_ids"], payload["grid_artifact_id"], payload["withheld"]) == ([], None, 2)


async def test_flagged_and_withheld_are_counted_in_usage(db, data):
    """Usage of the job counts every image made, those flagged (saved or dropped) and those dropped."""
    job = await _generating(db, data, 4)
    paths, grid = _files(data, job, 3)
    await lifecycle.finish_generation(db, job_id=job.id, lease_token=job.lease_token, image_paths=paths,
                                      grid_path=grid, seeds=[1, 2, 3], prompt="p", data_dir=data, gpu_seconds=1.0,
                                      flagged=[True, False, False], withheld=1)
    (total,) = await usage.totals(db, by="subject_id", guild_id=9)
    assert (total.key, total.images, total.flagged, total.withheld) == (job.subject_id, 4, 2, 1)


@pytest.mark.parametrize(("flagged", "seeds"), [([True], [1, 2]), ([True, False, True], [1, 2])])
async def test_verdicts_must_match_the_images(db, data, flagged, seeds):
    """A flag list of another length than the images is a worker bug, refused before anything is written."""
    job = await _generating(db, data, 2)
    paths, grid = _files(data, job, 2)
    with pytest.raises(ValueError):
        await lifecycle.finish_generation(db, job_id=job.id, lease_token=job.lease_token, image_paths=paths,
                                          grid_path=grid, seeds=seeds, prompt="p", data_dir=data, gpu_seconds=1.0,
                                          flagged=flagged)
    assert (await jobs.get(db, job.id)).state == "running" and await artifacts.for_job(db, job.id) == []


async def _training(db, data):
    """A consented subject's training, claimed and begun: a job that records sample grids."""
    queued = await consented(db, data, queue=QUEUE, review=False)
    job = await jobs.claim(db, worker_id="w", lease_seconds=60, kinds=("train",))
    assert job is not None and job.id == queued.job.id
    await lifecycle.begin_training(db, job_id=job.id, lease_token=job.lease_token)
    return job


@pytest.mark.parametrize(("meta", "counted"), [
    ({"step": 5, "nsfw": False, "withheld": 2}, (2, 2)),   # "block": two tiles greyed out
    ({"step": 5, "nsfw": True, "withheld": 0}, (1, 0)),    # "spoiler-...": kept whole, marked
    ({"step": 5, "nsfw": True, "withheld": 0, "flagged": 3}, (3, 0)),
    ({"step": 5, "nsfw": False, "withheld": 0}, None),     # clean: no usage row
])
async def test_a_sample_grid_counts_its_flagged_tiles(db, data, meta, counted):
    """record_artifact of a grid keeps its meta and counts flagged and withheld tiles for the subject."""
    job = await _training(db, data)
    rel = f"jobs/{job.id}/grid-step5.png"
    (data / rel).parent.mkdir(parents=True, exist_ok=True)
    (data / rel).write_bytes(b"grid")
    grid = await lifecycle.record_artifact(db, job_id=job.id, lease_token=job.lease_token, kind="grid", path=rel,
                                           data_dir=data, meta=meta)
    assert grid.meta == meta
    totals = await usage.totals(db, by="subject_id")
    assert [(t.key, t.jobs, t.gpu_seconds, t.images, t.flagged, t.withheld) for t in totals] == \
        ([(job.subject_id, 1, 0.0, 0, *counted)] if counted else [])
