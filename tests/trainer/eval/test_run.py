"""The evaluation run: metrics from known images, and the whole `dreambot eval` command on tiny models."""

from __future__ import annotations

import dataclasses
import json

import pytest
import skimage.data
from PIL import Image

from storage.config import Config
from trainer.eval import identity, metrics
from trainer.eval.run import format_table, score
from trainer.eval_cli import build_parser


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [Image.fromarray(skimage.data.chelsea()), Image.fromarray(skimage.data.coffee())]


def test_samples_identical_to_the_only_photo_score_one(embedders, photos):
    """Every sample is the real photo: DINO = CLIP-I = 1, DIV = 0, and class samples equal to it give PRES = 1."""
    dino, clip = embedders
    real = photos[:1]
    report = score([real * 3, real * 3], [real * 2, real * 2], real, ["a sks cat", "a sks cat on a bed"],
                   ["a cat", "a cat on a bed"], dino, clip)
    assert report.dino == pytest.approx(1.0, abs=1e-5) and report.clip_i == pytest.approx(1.0, abs=1e-5)
    assert report.div == pytest.approx(0.0, abs=1e-6) and report.pres == pytest.approx(1.0, abs=1e-5)
    assert report.n_images == 6 and report.real_dino is None


def test_clip_t_is_each_image_against_its_own_prompt(embedders, photos):
    """CLIP-T equals the mean cosine of each image's embedding with its own prompt's embedding."""
    dino, clip = embedders
    report = score([photos[:1], photos[1:]], None, photos, ["a cat", "a cup of coffee"], [], dino, clip)
    want = metrics.clip_t_score(clip.embed_images(photos), clip.embed_texts(["a cat", "a cup of coffee"]))
    assert report.clip_t == pytest.approx(want, abs=1e-6) and report.pres is None


def test_dino_is_the_mean_over_generated_and_real_pairs(embedders, photos):
    """Generated = [photo 0, photo 1] against real = [photo 0, photo 1]: (1 + 1 + 2 * cos) / 4."""
    dino, clip = embedders
    report = score([photos], None, photos, ["x"], [], dino, clip)
    e = dino.embed(photos)
    cos = float(metrics.cosine_matrix(e[:1], e[1:])[0, 0])
    assert report.dino == pytest.approx((2 + 2 * cos) / 4, abs=1e-5)
    assert report.real_dino == pytest.approx(cos, abs=1e-5)


def test_div_is_positive_for_different_samples(embedders, photos):
    dino, clip = embedders
    assert score([photos], None, photos, ["x"], [], dino, clip).div > 0


def test_prior_div_is_div_over_the_class_images(embedders, photos):
    """The class images' DIV is the paper's DIV over them: positive for different ones, 0 for copies."""
    dino, clip = embedders
    varied = score([photos], None, photos, ["x"], [], dino, clip, prior_images=photos)
    same = score([photos], None, photos, ["x"], [], dino, clip, prior_images=photos[:1] * 3)
    assert varied.prior_div == pytest.approx(metrics.div_score(dino.token_maps(photos)), abs=1e-6)
    assert varied.prior_div > 0 and same.prior_div == pytest.approx(0.0, abs=1e-6)


def test_stand_in_metric_models_mark_the_report_not_comparable(embedders, photos):
    """With the tiny random models, the table and the JSON say the figures are not the paper's to compare, and why."""
    dino, clip = embedders
    report = score([photos], None, photos, ["x"], [], dino, clip)
    table = format_table(report)
    saved = json.loads(json.dumps(dataclasses.asdict(report)))
    assert "NOT COMPARABLE to the paper's rows below" in table and "paper, real images (not comparable)" in table
    assert str(dino.identity.source) in table and "random weights" in table
    assert saved["comparable_to_paper"] is False and "random weights" in saved["why_not_comparable"]
    assert saved["metric_models"]["dino"]["papers"] is False and saved["metric_models"]["clip"]["papers"] is False


def test_papers_metric_models_leave_the_table_unmarked(embedders, photos, papers_configs):
    """When both metric models are the paper's, the paper's rows carry no mark and the JSON says comparable."""
    dino, clip = embedders
    papers = [identity.identify(role, m.hub_id, name=m.hub_id, config=papers_configs[role], untrained=False)
              for role, m in identity.PAPER_MODELS.items()]
    report = score([photos], None, photos, ["x"], [], dino, clip)
    report = dataclasses.replace(report, **identity.comparison(*papers))
    table = format_table(report)
    assert "NOT COMPARABLE" not in table and "(not comparable)" not in table
    assert "metric models: the paper's (facebook/dino-vits16, openai/clip-vit-base-patch32)" in table
    assert report.comparable_to_paper and report.why_not_comparable is None


@pytest.mark.slow
def test_eval_command_marks_stand_in_models_not_comparable(adapter_dir, metric_models, tmp_path, capsys):
    """`dreambot eval` with tiny stand-in metric models prints the warning and writes it to report.json."""
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("a {0} {1}\n")
    out = tmp_path / "eval"
    args = build_parser().parse_args([
        "eval", "--subject", str(adapter_dir), "--prompts", str(prompts_file), "--images-per-prompt", "1",
        "--steps", "1", "--no-class-prompts", "--prior-images", "0",
        "--dino-model", str(metric_models[0]), "--clip-model", str(metric_models[1]), "--out", str(out)])
    cfg = Config()
    cfg = type(cfg)(storage=cfg.storage, trainer=type(cfg.trainer)(device="cpu", mixed_precision="no"), bot=cfg.bot)
    assert args.func(args, cfg) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["comparable_to_paper"] is False and str(metric_models[0]) in report["why_not_comparable"]
    assert "NOT COMPARABLE to the paper's rows below" in capsys.readouterr().out


@pytest.mark.slow
def test_eval_command_writes_report_and_grids(adapter_dir, metric_models, tiny_model, tmp_path, capsys):
    """`dreambot eval` on an adapter folder: a table, report.json with each metric, one grid per prompt."""
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("a {0} {1} in the snow\na red {subject}\n")
    out = tmp_path / "eval"
    args = build_parser().parse_args([
        "eval", "--subject", str(adapter_dir), "--prompts", str(prompts_file), "--images-per-prompt", "2",
        "--steps", "2", "--dino-model", str(metric_models[0]), "--clip-model", str(metric_models[1]),
        "--out", str(out)])
    cfg = Config()
    cfg = type(cfg)(storage=cfg.storage, trainer=type(cfg.trainer)(device="cpu", mixed_precision="no"), bot=cfg.bot)
    assert args.func(args, cfg) == 0
    report = json.loads((out / "report.json").read_text())
    assert [p["prompt"] for p in report["prompts"]] == ["a sks dog in the snow", "a red sks dog"]
    assert [p["class_prompt"] for p in report["prompts"]] == ["a dog in the snow", "a red dog"]
    for key in ("dino", "clip_i", "clip_t", "pres"):
        assert -1.0 <= report[key] <= 1.0
    assert report["div"] >= 0 and report["n_images"] == 4 and report["real_dino"] is not None
    assert all((out / p["grid"]).is_file() for p in report["prompts"])
    assert report["prior_div"] >= 0 and report["prior"] == {"prompt": "a photo of a dog", "images": 8,
                                                             "source": "generated with the base model"}
    assert "DINO" in capsys.readouterr().out


@pytest.mark.slow
def test_eval_prints_the_class_images_div(adapter_dir, metric_models, photo_dir, tmp_path, capsys):
    """`dreambot eval --class-images DIR` scores those class images' DIV, prints it and writes it to report.json."""
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("a {0} {1}\n")
    out = tmp_path / "eval"
    args = build_parser().parse_args([
        "eval", "--subject", str(adapter_dir), "--prompts", str(prompts_file), "--images-per-prompt", "1",
        "--steps", "1", "--no-class-prompts", "--class-images", str(photo_dir), "--prior-images", "3",
        "--dino-model", str(metric_models[0]), "--clip-model", str(metric_models[1]), "--out", str(out)])
    cfg = Config()
    cfg = type(cfg)(storage=cfg.storage, trainer=type(cfg.trainer)(device="cpu", mixed_precision="no"), bot=cfg.bot)
    assert args.func(args, cfg) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["prior"] == {"prompt": "a photo of a dog", "images": 3, "source": str(photo_dir)}
    assert f"class images (the prior): DIV {report['prior_div']:.3f} over 3 images" in capsys.readouterr().out


def test_missing_metric_model_says_what_to_do(tmp_path):
    """A hub id that is not in the local cache gives ModelNotFound, not a download."""
    from trainer.errors import ModelNotFound
    from trainer.eval.models import DinoEmbedder

    with pytest.raises(ModelNotFound, match="hf download"):
        DinoEmbedder("nobody-here/no-such-dino")
