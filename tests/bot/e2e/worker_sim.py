"""The worker's side, done through storage as the trainer would: claim, write files, fenced lifecycle writes."""

from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image

from storage import artifacts, jobs, lifecycle, outbox, subjects
from storage.config import QueueConfig
from tests import helpers


def png(size: int = 64, colour=(200, 80, 40), noisy: bool = False) -> bytes:
    image = Image.new("RGB", (size, size), colour)
    if noisy:
        import numpy as np

        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


async def record_file(db, data_dir: Path, rel: str, data: bytes, **kw) -> artifacts.Artifact:
    path = data_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return await artifacts.record(db, path=rel, data_dir=data_dir, **kw)


async def ready_subject(db, data_dir: Path, *, owner_id: int, guild_id: int, name: str = "rex",
                        class_noun: str = "dog") -> subjects.Subject:
    """A trained subject with consent and an adapter, as if /train had run to the end long ago.

    Built through the lifecycle (tests.helpers.trained); its training's events count as delivered, so they
    never reach the channels a test watches.
    """
    subject = await helpers.trained(db, Path(data_dir), owner_id=owner_id, guild_id=guild_id, name=name,
                                    class_noun=class_noun, channel_id=None)
    trainings = {j.id for j in await jobs.list_jobs(db, user_id=owner_id) if j.subject_id == subject.id}
    for event in await outbox.pending(db, at=math.inf):
        if event.job_id in trainings:
            await outbox.mark_delivered(db, event.id)
    return subject


async def finish_generate(db, data_dir: Path, queue: QueueConfig, *, image: bytes | None = None,
                          flagged: tuple[bool, ...] = (), withheld: int = 0) -> jobs.Job:
    """Claim the next job (a generate one), write its images and grid, and finish it through the lifecycle,
    which records them and queues the `images` event. `flagged` marks images as the safety checker would;
    `withheld` of the job's n images were dropped before saving, as under the "block" policy."""
    job = await jobs.claim(db, worker_id="sim", lease_seconds=queue.lease_seconds)
    assert job is not None and job.kind == "generate"
    await jobs.heartbeat(db, job_id=job.id, lease_token=job.lease_token, lease_seconds=queue.lease_seconds)
    n = job.params.get("n", 1) - withheld
    paths = [f"jobs/{job.id}/images/{i:02d}.png" for i in range(n)]
    grid = f"jobs/{job.id}/grid.png" if n else None
    for rel in [*paths, *([grid] if grid else [])]:
        (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / rel).write_bytes(image or png())
    return await lifecycle.finish_generation(db, job_id=job.id, lease_token=job.lease_token, image_paths=paths,
                                             grid_path=grid, seeds=[1000 + i for i in range(n)],
                                             prompt=job.params["prompt"], data_dir=data_dir, gpu_seconds=1.0,
                                             flagged=flagged, withheld=withheld)


async def post(db, job: jobs.Job, kind: str, payload: dict) -> int:
    return await outbox.post(db, kind=kind, job_id=job.id, user_id=job.user_id, guild_id=job.guild_id,
                             channel_id=job.channel_id, payload={"job_id": job.id, **payload})
