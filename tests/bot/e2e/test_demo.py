"""The offline demo end to end: the real bot, the real worker on the tiny model, a scripted user."""

from __future__ import annotations

import pytest

from bot.demo import run_demo


@pytest.mark.slow
async def test_demo_trains_and_imagines_with_the_real_worker(tmp_path, capsys):
    """/train, Confirm, progress, grids, Keep final and /imagine all happen, and the files are left behind."""
    assert await run_demo(tmp_path) == 0
    transcript = (tmp_path / "transcript.txt").read_text()
    for expected in ("alice clicked [Confirm]", "training is queued", "sample grid at step 10", "is trained",
                     "now uses the final version", "**chelsea in space**", "seeds: 7, 8"):
        assert expected in transcript
    files = sorted(p.name for p in (tmp_path / "files").iterdir())
    assert any(name.endswith("-final-grid.png") for name in files)
    assert sum(name.endswith(("image-1.png", "image-2.png")) for name in files) == 2
    assert "Traceback" not in capsys.readouterr().out
