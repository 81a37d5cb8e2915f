"""The training loop on the tiny model: end to end, checkpoints, resume, out-of-memory retry."""

from __future__ import annotations

import dataclasses
import math
import shutil

import pytest
import safetensors.torch
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from trainer import checkpoints, data, lora, train
from trainer.errors import OutOfMemory
from trainer.models import pick_runtime


@pytest.fixture
def class_dir(pipe, tmp_path, train_cfg):
    return data.generate_class_images(pipe, tmp_path / "classes", prompt=train_cfg.class_prompt, count=4,
                                      resolution=64, steps=2, guidance=7.5)


def _run(pipe, cfg, photo_paths, class_dir, out, callbacks=None):
    return train.train(pipe, pick_runtime("cpu"), cfg, instance_paths=photo_paths, class_dir=class_dir,
                       out_dir=out, export_dir=out / "adapter", kohya_path=out / "kohya.safetensors",
                       metadata={"photo_sha256": ["00"]}, callbacks=callbacks)


class Recorder(train.Callbacks):
    def __init__(self, stop_at: int | None = None):
        self.progress, self.checkpoints, self.messages, self.stop_at = [], [], [], stop_at

    def on_progress(self, progress):
        self.progress.append(progress)

    def on_checkpoint(self, checkpoint):
        self.checkpoints.append(checkpoint)

    def on_message(self, text):
        self.messages.append(text)

    def should_stop(self):
        return self.stop_at is not None and any(c.step >= self.stop_at for c in self.checkpoints)


def test_short_run_end_to_end(pipe, train_cfg, photo_paths, class_dir, tmp_path, monkeypatch):
    """Four steps give finite losses, an adapter, a kohya copy, grids and only the newest checkpoint."""
    monkeypatch.setattr(train, "LOG_EVERY_SECONDS", 1e9)  # report at checkpoints only, however slow the CPU
    rec = Recorder()
    result = _run(pipe, train_cfg, photo_paths, class_dir, tmp_path / "job", rec)
    assert result.step == 4 and not result.stopped and result.resumed_from is None
    assert [p.step for p in rec.progress] == [2, 4] and all(math.isfinite(p.loss) for p in rec.progress)
    assert all(p.prior_loss > 0 for p in rec.progress)
    assert [c.step for c in rec.checkpoints] == [2, 4] and rec.checkpoints[-1].final
    assert [p.name for p in checkpoints.checkpoint_dirs(tmp_path / "job")] == ["step-000004"]
    assert (result.adapter_dir / "pytorch_lora_weights.safetensors").is_file() and result.kohya_path.is_file()
    assert result.grid.stat().st_size < 10 * 1024 * 1024
    assert not any("lora" in n for n, _ in pipe.unet.named_parameters())  # adapters removed afterwards
    assert not list((tmp_path / "job").rglob(".tmp-*"))  # every file was renamed into place


def test_training_changes_the_lora_weights(pipe, train_cfg, photo_paths, class_dir, tmp_path):
    """LoRA B matrices start at zero and move."""
    result = _run(pipe, train_cfg, photo_paths, class_dir, tmp_path / "job")
    weights = load_file(str(result.adapter_dir / "pytorch_lora_weights.safetensors"))
    ups = [v for k, v in weights.items() if "lora_B" in k or "lora.up" in k]
    assert ups and all(v.abs().sum() > 0 for v in ups)


def test_stop_then_resume_equals_an_uninterrupted_run(pipe, train_cfg, photo_paths, class_dir, tmp_path):
    """Stopped after the step-2 checkpoint and run again, training ends with the same weights as one run."""
    straight = _run(pipe, train_cfg, photo_paths, class_dir, tmp_path / "a")
    first = _run(pipe, train_cfg, photo_paths, class_dir, tmp_path / "b", Recorder(stop_at=2))
    assert first.stopped and first.step == 2
    rec = Recorder()
    second = _run(pipe, train_cfg, photo_paths, class_dir, tmp_path / "b", rec)
    assert second.resumed_from == 2 and "step 2 of 4" in rec.messages[0]
    a = load_file(str(straight.adapter_dir / "pytorch_lora_weights.safetensors"))
    b = load_file(str(second.adapter_dir / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # equal up to float summation order (CPU threads); a lost RNG or optimizer state is ~1e-4 off
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_each_checkpoint_carries_its_own_kohya_copy(pipe, train_cfg, photo_paths, class_dir, tmp_path):
    """step-N/kohya.safetensors holds step N's weights, not the final ones, and says N in its header."""
    cfg = dataclasses.replace(train_cfg, keep_checkpoints=2)
    _run(pipe, cfg, photo_paths, class_dir, tmp_path / "job")
    step2, step4 = checkpoints.checkpoint_dirs(tmp_path / "job")
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    kohya_key = "lora_unet_" + key.replace(".", "_") + ".lora_down.weight"
    with safe_open(str(step2 / checkpoints.CHECKPOINT_KOHYA), framework="pt") as f:
        header, down = f.metadata(), f.get_tensor(kohya_key)
    adapter = load_file(str(step2 / "adapter" / lora.WEIGHT_NAME))
    assert header["ss_steps"] == "2" and lora.read_metadata(step2 / checkpoints.CHECKPOINT_KOHYA)["steps_done"] == 2
    torch.testing.assert_close(down, adapter[f"unet.{key}.lora_A.weight"].half(), rtol=0, atol=0)
    assert not torch.equal(down, load_file(str(step4 / checkpoints.CHECKPOINT_KOHYA))[kohya_key])


@pytest.mark.parametrize("failing", ["checkpoints/.tmp-step-000002-", ".tmp-adapter-",
                                     ".tmp-kohya.safetensors-"])
def test_a_failed_save_leaves_no_half_written_file(pipe, train_cfg, photo_paths, class_dir, tmp_path,
                                                   monkeypatch, failing):
    """A write failing mid-save (checkpoint, final adapter or kohya copy) leaves neither it nor a temp."""
    write = safetensors.torch.save_file

    def save_file(tensors, filename, *args, **kwargs):
        if failing in str(filename):
            raise OSError("disk full")
        return write(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    out = tmp_path / "job"
    with pytest.raises(OSError, match="disk full"):
        _run(pipe, dataclasses.replace(train_cfg, steps=2), photo_paths, class_dir, out)
    assert not list(out.rglob(".tmp-*"))
    if failing.startswith("checkpoints"):
        assert checkpoints.checkpoint_dirs(out) == [] and not (out / "adapter").exists()
    elif failing == ".tmp-adapter-":
        assert not (out / "adapter").exists() and not (out / "kohya.safetensors").exists()
    else:  # the adapter folder, complete before the kohya write began, stays; the kohya file is not there
        assert (out / "adapter" / lora.WEIGHT_NAME).is_file() and not (out / "kohya.safetensors").exists()


def test_text_encoder_lora_trains(pipe, train_cfg, photo_paths, class_dir, tmp_path):
    """With train_text_encoder the adapter file holds text-encoder LoRA weights too."""
    cfg = dataclasses.replace(train_cfg, train_text_encoder=True, steps=2)
    result = _run(pipe, cfg, photo_paths, class_dir, tmp_path / "job")
    keys = load_file(str(result.adapter_dir / "pytorch_lora_weights.safetensors")).keys()
    assert any(k.startswith("text_encoder.") for k in keys)


@pytest.mark.parametrize(("batch", "tried"), [
    (1, [(1, False, "adamw"), (1, True, "adamw"), (1, True, "adamw8bit")]),
    (2, [(2, False, "adamw"), (2, True, "adamw"), (2, True, "adamw8bit"), (1, True, "adamw8bit")]),
])
def test_out_of_memory_walks_down_the_memory_ladder(monkeypatch, pipe, train_cfg, tmp_path, batch, tried):
    """Each CUDA OOM retries one rung leaner (checkpointing, 8-bit AdamW, smaller batch); past the last, a clear error."""
    seen = []

    def fake(pipe, runtime, cfg, **kwargs):
        seen.append((cfg.batch_size, cfg.gradient_checkpointing, cfg.optimizer))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(train, "_train", fake)
    with pytest.raises(OutOfMemory, match="even with gradient checkpointing and 8-bit AdamW at batch 1"):
        _run(pipe, dataclasses.replace(train_cfg, batch_size=batch), [tmp_path / "x.png"], None, tmp_path / "job")
    assert seen == tried


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                    reason="torch.compile on the CPU needs a C++ compiler")
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])  # reduce-overhead has no CUDA graphs on the CPU
def test_compiled_unet_trains_to_the_same_weights(pipe, train_cfg, photo_paths, class_dir, tmp_path, mode):
    """compile_unet (torch.compile, either mode) changes the speed of a step, not what it learns."""
    torch._dynamo.reset()
    eager = _run(pipe, train_cfg, photo_paths, class_dir, tmp_path / "eager")
    compiled = _run(pipe, dataclasses.replace(train_cfg, compile_unet=mode), photo_paths, class_dir,
                    tmp_path / "compiled")
    a = load_file(str(eager.adapter_dir / "pytorch_lora_weights.safetensors"))
    b = load_file(str(compiled.adapter_dir / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # fused kernels sum in another order: equal up to float noise, far below a step's change
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-5)
    assert not any("lora" in n for n, _ in pipe.unet.named_parameters())


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_a_second_compiled_run_reuses_the_first_runs_graph(pipe, train_cfg, photo_paths, class_dir, tmp_path):
    """Jobs on one warm pipeline compile the UNet once: the next job's inputs pass the compiled graph's guards."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    cfg = dataclasses.replace(train_cfg, compile_unet="default")
    _run(pipe, cfg, photo_paths, class_dir, tmp_path / "first")
    graphs = counters["stats"]["unique_graphs"]
    _run(pipe, cfg, photo_paths, class_dir, tmp_path / "second")
    assert counters["stats"]["unique_graphs"] == graphs


def test_channels_last_applies_to_the_training_unet_on_cuda_only(pipe, train_cfg):
    """channels_last lays the UNet's convolution weights out NHWC for a CUDA run and leaves a CPU run's alone."""
    train._training_unet(pipe.unet, train_cfg, "cpu")
    assert pipe.unet.conv_in.weight.is_contiguous()
    train._training_unet(pipe.unet, train_cfg, "cuda")  # the layout change itself runs on any device
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.fixture
def gridded(pipe, train_cfg, photo_paths, tmp_path):
    """Three steps, a checkpoint at each, a progress grid every 2 steps (one 32 px tile) and a final grid of
    2 prompts x 2 seeds at 40 px; returns (result, the checkpoints reported)."""
    cfg = dataclasses.replace(train_cfg, steps=3, checkpoint_every=1, class_images=0, sample_seeds=(0, 1),
                              grid_every=2, grid_images=1, grid_resolution=32, grid_steps=1,
                              final_grid_images=4, final_grid_resolution=40, final_grid_steps=1)
    rec = Recorder()
    result = train.train(pipe, pick_runtime("cpu"), cfg, instance_paths=photo_paths[:1], class_dir=None,
                         out_dir=tmp_path / "job", export_dir=tmp_path / "adapter",
                         kohya_path=tmp_path / "kohya.safetensors", callbacks=rec)
    return result, rec.checkpoints


def test_grids_are_drawn_every_grid_every_steps_and_at_the_end(gridded):
    """Every checkpoint is reported; only those at multiples of grid_every and the last one carry a grid."""
    _, reported = gridded
    assert [(c.step, c.grid is not None) for c in reported] == [(1, False), (2, True), (3, True)]


def test_progress_grid_takes_its_size_from_the_grid_settings(gridded):
    """grid_images, grid_resolution and grid_steps shape a progress grid: here one 32 px tile."""
    from PIL import Image

    _, reported = gridded
    assert Image.open(reported[1].grid).size == (32, 32)


def test_final_grid_takes_its_size_from_the_final_grid_settings(gridded):
    """final_grid_images and final_grid_resolution shape the final grid: 2 prompts x 2 seeds of 40 px tiles."""
    from PIL import Image

    result, reported = gridded
    assert result.grid == reported[-1].grid and Image.open(result.grid).size == (80, 80)


def test_the_result_says_when_stepping_began_and_what_grids_cost(gridded):
    """first_step_at is set, and the time drawing grids is counted apart from the rest of the run."""
    result, _ = gridded
    assert result.first_step_at is not None and 0 < result.grid_seconds < result.seconds


@pytest.mark.parametrize(("weights", "resumes"), [("same", True), ("other", False)])
def test_resume_on_another_host_follows_the_weights_not_the_path(pipe, train_cfg, photo_paths, class_dir, tmp_path,
                                                                 weights, resumes):
    """A fleet's hosts keep the base model at different paths: a checkpoint made on one resumes on another when
    the weights' fingerprint matches, and starts afresh when it doesn't."""
    here = dataclasses.replace(train_cfg, base_model="/host-a/models/sd", base_weights="same")
    first = _run(pipe, here, photo_paths, class_dir, tmp_path / "job", Recorder(stop_at=2))
    assert first.stopped
    there = dataclasses.replace(train_cfg, base_model="/host-b/cache/sd", base_weights=weights)
    second = _run(pipe, there, photo_paths, class_dir, tmp_path / "job")
    assert second.resumed_from == (2 if resumes else None)
