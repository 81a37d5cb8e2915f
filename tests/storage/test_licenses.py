"""The base model's license: the override, model cards (folder and Hugging Face cache), file headers, known ids."""

from __future__ import annotations

import json
import struct

import pytest

from storage import licenses

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def card(folder, front_matter: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(f"---\n{front_matter}\n---\n\n# A model\n", encoding="utf-8")
    return folder


def hub_cache(root, repo_id: str, files: dict[str, str]):
    """The Hugging Face cache layout: models--owner--name/{refs/main, snapshots/<commit>/...}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).write_text(text, encoding="utf-8")
    return root


def safetensors_file(path, metadata: dict[str, str]):
    """A valid .safetensors file with no tensors and the given header metadata."""
    header = json.dumps({"__metadata__": metadata}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def test_a_local_folder_s_model_card_gives_the_license(tmp_path):
    """A diffusers folder's README.md front matter names the license; the known id fills in its name and link."""
    found = licenses.resolve(str(card(tmp_path / "sd15", "license: creativeml-openrail-m\ntags:\n- art")))
    assert (found.license, found.name, found.source) == ("creativeml-openrail-m", "CreativeML OpenRAIL-M",
                                                         "model card")
    assert found.url and found.revision is None and found.model_name == "sd15"


def test_a_hub_id_s_card_is_read_from_the_cache_with_its_revision(tmp_path, monkeypatch):
    """A hub id reads the cached snapshot's card, and the revision is that snapshot's commit hash."""
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache(tmp_path / "hub", "someone/my-model", {
        "README.md": "---\nlicense: openrail++\n---\n", "model_index.json": "{}"})))
    found = licenses.resolve("someone/my-model")
    assert (found.license, found.name, found.revision, found.source) == (
        "openrail++", "CreativeML OpenRAIL++-M", COMMIT, "model card")


def test_a_known_hub_id_without_a_cached_card_keeps_the_snapshot_revision(tmp_path, monkeypatch):
    """diffusers downloads no README.md: SD 1.5 is then known by its id, the revision still read from the cache."""
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache(tmp_path / "hub", "runwayml/stable-diffusion-v1-5",
                                                     {"model_index.json": "{}"})))
    found = licenses.resolve("runwayml/stable-diffusion-v1-5")
    assert (found.license, found.revision, found.source) == ("creativeml-openrail-m", COMMIT, "known model")


def test_a_single_file_s_header_gives_the_license(tmp_path):
    """A .safetensors checkpoint's `modelspec.license` header entry names the license."""
    path = safetensors_file(tmp_path / "my-model.safetensors", {"modelspec.license": "openrail++"})
    found = licenses.resolve(str(path))
    assert (found.license, found.source, found.model_name) == ("openrail++", "file metadata", "my-model.safetensors")


def test_the_override_wins_over_the_card(tmp_path):
    """trainer.model_license is used as given, with its link, whatever the card says."""
    folder = card(tmp_path / "m", "license: mit")
    found = licenses.resolve(str(folder), "acme-model-license https://example.com/license")
    assert (found.license, found.url, found.source) == ("acme-model-license", "https://example.com/license", "config")


@pytest.mark.parametrize(("model", "license_id"), [
    ("runwayml/stable-diffusion-v1-5", "creativeml-openrail-m"),
    ("CompVis/stable-diffusion-v1-4", "creativeml-openrail-m"),
    ("stabilityai/stable-diffusion-2-1", "openrail++"),
    ("stabilityai/stable-diffusion-xl-base-1.0", "openrail++"),
])
def test_well_known_models_are_known_offline(model, license_id, tmp_path, monkeypatch):
    """With an empty cache, the usual SD 1.x, 2.x and XL ids still resolve to their licenses."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    assert licenses.resolve(model).license == license_id


def test_an_unknown_model_says_to_set_the_license(tmp_path):
    """No card, no header, not well known: 'unknown', and the message names trainer.model_license."""
    folder = tmp_path / "mystery"
    folder.mkdir()
    found = licenses.resolve(str(folder))
    assert not found.known and found.source == "unknown"
    assert "trainer.model_license" in found.operator_message()
    assert "has not stated" in found.sentence()


@pytest.mark.parametrize(("front_matter", "want"), [
    ('license: "apache-2.0"  # quoted, with a comment', {"license": "apache-2.0"}),
    ("license:\n  - mit\nlanguage: en", {"license": "mit"}),
    ("license: other\nlicense_name: my-terms\nlicense_link: https://example.com/terms",
     {"license": "other", "license_name": "my-terms", "license_link": "https://example.com/terms"}),
    ("widget:\n  license: not-this-one", {}),
])
def test_card_front_matter_is_read(tmp_path, front_matter, want):
    """Quoted values, a one-item list and the `other` convention are read; nested keys are not the license."""
    assert licenses.read_card(card(tmp_path / "m", front_matter) / "README.md") == want


def test_license_other_shows_its_name_and_link(tmp_path):
    """`license: other` is shown by its license_name, linked by its license_link."""
    folder = card(tmp_path / "m", "license: other\nlicense_name: acme terms\nlicense_link: https://example.com/t")
    assert licenses.resolve(str(folder)).sentence() == "Images are made with m under acme terms (<https://example.com/t>)."


def test_a_written_card_reads_back(tmp_path):
    """write_card's front matter is what read_card reads."""
    licenses.write_card(tmp_path, license_id="other", license_name='terms: "quoted"', title="T", body="b")
    assert licenses.read_card(tmp_path / "README.md") == {"license": "other", "license_name": 'terms: "quoted"'}
