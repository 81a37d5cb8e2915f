"""The memory plan: which batch, checkpointing and optimizer fit, and the ladder an out-of-memory retry walks."""

from __future__ import annotations

import pytest

from trainer.memory import GIB, MemoryPlan, estimate_bytes, ladder, plan

LEANEST = MemoryPlan(1, True, "adamw8bit")


def _plan(family: str, free_gib: float | None, *, batch: int = 1, resolution: int | None = None) -> MemoryPlan:
    res = resolution or {"sd1": 512, "sd2": 768, "sdxl": 1024}[family]
    return plan(family=family, resolution=res, rank=16, train_text_encoder=False,
                free_bytes=None if free_gib is None else int(free_gib * GIB), requested_batch=batch)


def test_the_cpu_runs_the_requested_batch_as_is():
    """Without a GPU (free_bytes None) nothing is traded away: the batch asked for, no checkpointing, AdamW."""
    assert _plan("sdxl", None, batch=4) == MemoryPlan(4, False, "adamw")


def test_a_large_gpu_keeps_the_fastest_plan():
    """With memory to spare, SDXL at 1024 px trains without checkpointing or 8-bit moments."""
    assert _plan("sdxl", 80) == MemoryPlan(1, False, "adamw")


def test_a_24_gib_gpu_checkpoints_sdxl_but_not_sd15():
    """On a 24 GiB card SDXL at 1024 px turns checkpointing on; SD 1.5 at 512 px needs nothing."""
    assert _plan("sdxl", 23).gradient_checkpointing
    assert _plan("sd1", 23) == MemoryPlan(1, False, "adamw")


def test_too_little_memory_takes_the_leanest_plan():
    """When nothing fits, the plan is batch 1 with checkpointing and 8-bit AdamW (the run then says what to do)."""
    assert _plan("sdxl", 4) == LEANEST


def test_the_batch_is_lowered_only_after_checkpointing_and_8bit():
    """A requested batch is kept while checkpointing and 8-bit AdamW can make it fit."""
    chosen = _plan("sd1", 10, batch=4)
    assert chosen.batch_size == 4 and chosen.gradient_checkpointing


def test_the_requested_batch_is_the_most_the_plan_chooses():
    """The plan never raises the batch above the setting, whatever the free memory."""
    assert _plan("sd1", 140, batch=2).batch_size == 2


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_each_rung_of_the_ladder_needs_less_memory(family):
    """Walking down the ladder never raises the estimate, and it ends at the leanest plan."""
    top = MemoryPlan(8, False, "adamw")
    steps = [top, *ladder(top)]
    needs = [estimate_bytes(family=family, resolution=512, rank=16, train_text_encoder=True, plan=p) for p in steps]
    assert needs == sorted(needs, reverse=True) and len(set(needs)) == len(needs)
    assert steps[-1] == LEANEST


def test_the_ladder_starts_below_the_plan_and_is_empty_at_the_bottom():
    """An out-of-memory retry only tries plans leaner than the one that failed; none after the leanest."""
    assert ladder(MemoryPlan(2, True, "adamw")) == [MemoryPlan(2, True, "adamw8bit"), LEANEST]
    assert ladder(LEANEST) == []


def test_larger_images_need_more_memory():
    """The estimate grows with the image's area (SD 2.x at 768 px needs more than at 512 px)."""
    at_512, at_768 = (estimate_bytes(family="sd2", resolution=r, rank=16, train_text_encoder=False,
                                     plan=MemoryPlan(1, False, "adamw")) for r in (512, 768))
    assert at_768 > at_512


def test_the_worker_logs_the_plan_it_applies(caplog):
    """At the start of a train job the worker logs the chosen plan and trains with it."""
    import logging

    from storage.config import StorageConfig, TrainerSettings
    from trainer.config import TrainConfig
    from trainer.models import pick_runtime
    from trainer.worker import Worker

    worker = Worker(TrainerSettings(batch_size=2), StorageConfig())
    worker._runtime = pick_runtime("cpu")
    job = type("Job", (), {"id": 7})()
    with caplog.at_level(logging.INFO, logger="trainer.worker"):
        cfg = worker._memory_plan(job, TrainConfig(family="sdxl", resolution=1024, batch_size=2, optimizer="adamw8bit"))
    assert (cfg.batch_size, cfg.gradient_checkpointing, cfg.optimizer) == (2, False, "adamw")  # the CPU: as asked
    assert "job 7: memory plan for sdxl at 1024 px: batch 2, gradient checkpointing off, AdamW" in caplog.text


def test_memory_off_trains_with_the_settings_as_given():
    """With trainer.memory = "off" the worker leaves batch, checkpointing and optimizer as resolved."""
    from storage.config import StorageConfig, TrainerSettings
    from trainer.config import TrainConfig
    from trainer.worker import Worker

    cfg = TrainConfig(batch_size=3, gradient_checkpointing=True)
    assert Worker(TrainerSettings(memory="off"), StorageConfig())._memory_plan(None, cfg) is cfg


def _batch(free_gib: float | None, *, family: str = "sd1", count: int = 100) -> int:
    from trainer.memory import generation_batch

    res = {"sd1": 512, "sd2": 768, "sdxl": 1024}[family]
    return generation_batch(family=family, resolution=res, count=count,
                            free_bytes=None if free_gib is None else int(free_gib * GIB))


def test_the_cpu_generates_a_fixed_modest_batch():
    """Without a GPU (free_bytes None) class images are made four at a time."""
    assert _batch(None) == 4


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_more_free_memory_never_gives_a_smaller_generation_batch(family):
    """The class-image batch grows (or stays) with the free memory, within 1 and 16."""
    batches = [_batch(gib, family=family) for gib in (1, 4, 8, 12, 16, 24, 40, 80, 140)]
    assert batches == sorted(batches) and batches[0] >= 1 and batches[-1] <= 16


@pytest.mark.parametrize("free_gib", [0.0, 0.5, 3.0])
def test_tiny_free_memory_generates_one_at_a_time(free_gib):
    """When not even the weights fit the estimate, the batch is 1 (the worker then tries it)."""
    assert _batch(free_gib) == 1


@pytest.mark.parametrize(("free_gib", "count", "expected"), [(140, 3, 3), (None, 2, 2), (140, 0, 1)])
def test_the_generation_batch_is_never_more_than_the_images_asked_for(free_gib, count, expected):
    """No batch exceeds the number of class images to make, and none is below 1."""
    assert _batch(free_gib, count=count) == expected


def test_a_large_gpu_generates_sd15_class_images_sixteen_at_a_time():
    """An 80 GiB card fits the largest batch of SD 1.5 images at 512 px."""
    assert _batch(80) == 16
