"""Config: defaults match config.toml, environment overrides, and errors that name key, value and rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.config import REPO_CONFIG, Config, ConfigError, discord_token, load


def test_config_toml_matches_the_dataclass_defaults():
    """The shipped config.toml states the same defaults the code falls back to (presets aside)."""
    shipped = load(REPO_CONFIG, env={})
    defaults = Config()
    assert shipped.storage == defaults.storage
    assert shipped.bot == defaults.bot
    assert {k: v for k, v in vars(shipped.trainer).items() if k != "presets"} == \
        {k: v for k, v in vars(defaults.trainer).items() if k != "presets"}
    assert set(shipped.trainer.presets) == {"quick", "balanced", "faces"}


def test_environment_overrides_a_single_key():
    """DREAMBOT_<TABLE>_<KEY> replaces one value and leaves the rest."""
    cfg = load(REPO_CONFIG, env={"DREAMBOT_STORAGE_PHOTOS_MIN_SIDE": "300", "DREAMBOT_STORAGE_DATA_DIR": "/srv/x"})
    assert cfg.storage.photos.min_side == 300
    assert cfg.storage.data_dir == Path("/srv/x")
    assert cfg.storage.photos.warn_side == 512


def test_environment_overrides_a_preset_field():
    """Preset fields can be overridden by name."""
    cfg = load(REPO_CONFIG, env={"DREAMBOT_TRAINER_PRESETS_QUICK_STEPS": "50"})
    assert cfg.trainer.presets["quick"].steps == 50


@pytest.mark.parametrize(("env", "message"), [
    ({"DREAMBOT_STORAGE_PHOTOS_MIN_SIDE": "tiny"}, "storage.photos.min_side = 'tiny' is not a valid int"),
    ({"DREAMBOT_STORAGE_PHOTOS_MIN_SIDE": "10"}, "storage.photos.min_side = '10' is out of range: it must be at least 64"),
    ({"DREAMBOT_TRAINER_DEVICE": "tpu"}, "trainer.device = 'tpu' is not allowed: choose one of auto, cuda, cpu"),
    ({"DREAMBOT_BOT_REVIEW_REQUIRED": "maybe"}, "bot.review_required = 'maybe' is not a valid bool"),
    ({"DREAMBOT_NO_SUCH_KEY": "1"}, "DREAMBOT_NO_SUCH_KEY does not name a setting"),
    ({"DREAMBOT_TRAINER_DEFAULT_PRESET": "turbo"}, "trainer.default_preset = 'turbo' is not one of the presets"),
    ({"DREAMBOT_TRAINER_COMPILE_UNET": "max"},
     "trainer.compile_unet = 'max' is not allowed: choose one of off, default, reduce-overhead"),
])
def test_bad_value_names_key_value_and_rule(env, message):
    """A wrong value fails with the key, the value and what is allowed."""
    with pytest.raises(ConfigError) as err:
        load(REPO_CONFIG, env=env)
    assert message in str(err.value)


def test_unknown_key_in_file_is_refused(tmp_path):
    """A misspelt key in config.toml is an error listing the valid keys."""
    path = tmp_path / "config.toml"
    path.write_text("[storage]\ndata_dirr = 'x'\n")
    with pytest.raises(ConfigError, match="unknown setting storage.data_dirr: allowed keys here are blob_url, busy_timeout_ms"):
        load(path, env={})


def test_token_comes_only_from_environment(monkeypatch):
    """The Discord token is read from DISCORD_TOKEN and appears in no config field."""
    monkeypatch.setenv("DISCORD_TOKEN", "secret-token-value")
    assert discord_token() == "secret-token-value"
    assert "secret-token-value" not in repr(load(REPO_CONFIG))


def test_missing_token_says_what_to_do(monkeypatch):
    """Without DISCORD_TOKEN the error says to export it."""
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="export the bot token"):
        discord_token()


def test_a_list_setting_is_read_from_toml_and_from_a_comma_separated_variable(tmp_path):
    """[storage.likeness] lists come from TOML arrays; the environment gives them comma-separated."""
    path = tmp_path / "config.toml"
    path.write_text('[storage.likeness]\nperson_nouns = ["Person", "robot"]\n')
    cfg = load(path, env={"DREAMBOT_STORAGE_LIKENESS_REFUSED_TERMS": "gore, blood ,"})
    assert cfg.storage.likeness.person_nouns == ("person", "robot")
    assert cfg.storage.likeness.refused_terms == ("gore", "blood")


def _toml_comments(table: str) -> dict[str, str]:
    """key -> inline comment of each `key = value  # comment` line directly under [table] in config.toml."""
    import re

    comments, inside = {}, False
    for line in REPO_CONFIG.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            inside = line.strip() == f"[{table}]"
        elif inside and (m := re.match(r"^(\w+) = .*?\s+# (.*)$", line)):
            comments[m.group(1)] = m.group(2)
    return comments


def test_each_trainer_setting_is_declared_once_with_its_help():
    """config.toml's [trainer] keys and comments are exactly the TrainerSettings fields and their declared help."""
    import dataclasses

    from storage.config import TrainerSettings, help_text

    tables = {"presets", "families"}
    declared = {f.name for f in dataclasses.fields(TrainerSettings)} - tables
    comments = _toml_comments("trainer")
    assert set(comments) == declared
    for name in declared:
        assert help_text(TrainerSettings, name), f"trainer.{name} has no help= in storage/config.py"
        assert comments[name] == help_text(TrainerSettings, name), f"config.toml's comment on trainer.{name}"


def test_preset_fields_are_explained_with_their_declared_help():
    """The first preset in config.toml explains each field with the help Preset declares."""
    import dataclasses

    from storage.config import Preset, help_text

    comments = _toml_comments("trainer.presets.quick")
    assert comments == {f.name: help_text(Preset, f.name) for f in dataclasses.fields(Preset)}


def test_environment_overrides_a_family_preset_field():
    """DREAMBOT_TRAINER_FAMILIES_<FAMILY>_PRESETS_<NAME>_<FIELD> reaches one family's preset and nothing else."""
    cfg = load(REPO_CONFIG, env={"DREAMBOT_TRAINER_FAMILIES_SDXL_PRESETS_QUICK_STEPS": "7",
                                 "DREAMBOT_TRAINER_FAMILIES_SD2_RESOLUTION": "512"})
    assert cfg.trainer.families["sdxl"].presets["quick"].steps == 7
    assert cfg.trainer.families["sd2"].resolution == 512
    assert cfg.trainer.presets["quick"].steps == 400  # as config.toml says


@pytest.mark.parametrize(("line", "env", "mode"), [
    ("compile_unet = false", {}, "off"),
    ("compile_unet = true", {}, "default"),
    ('compile_unet = "reduce-overhead"', {}, "reduce-overhead"),
    ("", {"DREAMBOT_TRAINER_COMPILE_UNET": "true"}, "default"),
])
def test_compile_unet_reads_its_old_bool_values_as_modes(tmp_path, line, env, mode):
    """trainer.compile_unet keeps reading false/true (TOML or environment) as "off"/"default"."""
    path = tmp_path / "config.toml"
    path.write_text(f"[trainer]\n{line}\n")
    assert load(path, env=env).trainer.compile_unet == mode


@pytest.mark.parametrize(("key", "value", "message"), [
    ("DREAMBOT_STORAGE_DATABASE_URL", "mysql://db/x", "is not a PostgreSQL URL"),
    ("DREAMBOT_STORAGE_BLOB_URL", "https://bucket/x", "is not an object store URL"),
    ("DREAMBOT_BOT_SHARDS", "many", "is not allowed"),
    ("DREAMBOT_BOT_SHARDS", "0", "is not allowed"),
    ("DREAMBOT_LOGGING_FORMAT", "xml", "choose one of text, json"),
])
def test_fleet_settings_refuse_what_cannot_work(key, value, message):
    """A database, object store, shard count or log format that cannot work stops start-up with a message."""
    with pytest.raises(ConfigError, match=message):
        load(env={key: value})


def test_database_url_takes_the_place_of_the_sqlite_file():
    """With storage.database_url set, every process opens PostgreSQL; unset, the SQLite file."""
    url = "postgresql://dreambot@db:5432/dreambot"
    assert load(env={"DREAMBOT_STORAGE_DATABASE_URL": url}).storage.database == url
    assert str(load(env={}).storage.database).endswith("dreambot.sqlite3")
