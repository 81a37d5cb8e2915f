"""compose.yaml, checked without a container runtime: every dreambot service runs a real command with real
flags, every DREAMBOT_* variable is a setting with an accepted value, and the fleet's wiring is complete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cli.main import build_parser
from storage.config import load

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
DREAMBOT = {name: s for name, s in SERVICES.items() if s.get("entrypoint") == ["dreambot"]}


def interpolated(value: str) -> str:
    """The value compose would pass, with ${VAR:?message} and ${VAR} filled by a stand-in."""
    return re.sub(r"\$\{(\w+)[^}]*\}", lambda m: f"example-{m.group(1).lower()}", str(value))


def test_the_fleet_has_a_bot_two_workers_a_database_and_an_object_store():
    """One bot, at least two workers, PostgreSQL and an S3-compatible store, each worker on a GPU."""
    commands = [s["command"][0] for s in DREAMBOT.values() if "setup" not in s.get("profiles", [])]
    assert commands.count("bot") == 1 and commands.count("worker") >= 2
    assert SERVICES["postgres"]["image"].startswith("postgres:") and SERVICES["minio"]["image"].startswith("minio/")
    for name, service in DREAMBOT.items():
        if service["command"][0] == "worker":
            assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"], name


@pytest.mark.parametrize("name", sorted(DREAMBOT))
def test_each_dreambot_service_runs_a_real_command_with_real_flags(name):
    """The command parses with dreambot's own parser (an unknown command or flag exits)."""
    args = build_parser().parse_args([str(part) for part in DREAMBOT[name]["command"]])
    if args.command in ("bot", "run", "worker"):
        assert args.metrics_port is not None and args.metrics_host == "0.0.0.0"  # scraped from outside


@pytest.mark.parametrize("name", sorted(DREAMBOT))
def test_each_dreambot_service_environment_is_accepted_by_the_config_loader(name):
    """Every DREAMBOT_* variable names a setting and its value passes the loader's checks."""
    env = {key: interpolated(value) for key, value in DREAMBOT[name]["environment"].items()}
    assert any(key.startswith("DREAMBOT_") for key in env)
    cfg = load(ROOT / "config.toml", env={k: v for k, v in env.items() if k.startswith("DREAMBOT_")})
    assert cfg.storage.database_url.startswith("postgresql://") and "@postgres:" in cfg.storage.database_url
    assert cfg.storage.blob_url.startswith("s3://") and cfg.logging.format == "json"
    assert ":" not in cfg.storage.database_url.split("://", 1)[1].split("@", 1)[0]  # no password in the URL
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000" and env["PGPASSWORD"]


def test_only_the_bot_gets_the_discord_token():
    """DISCORD_TOKEN reaches the bot's container and no worker's."""
    holders = [name for name, s in DREAMBOT.items() if "DISCORD_TOKEN" in s["environment"]]
    assert holders == ["bot"]


def test_the_bucket_the_services_use_is_created_before_they_start():
    """The bucket service makes the bucket named in blob_url, and the dreambot services wait for it."""
    bucket = DREAMBOT["bot"]["environment"]["DREAMBOT_STORAGE_BLOB_URL"].removeprefix("s3://").split("/")[0]
    assert f"fleet/{bucket}" in " ".join(SERVICES["bucket"]["command"])
    for service in DREAMBOT.values():
        assert service["depends_on"]["bucket"] == {"condition": "service_completed_successfully"}
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_metrics_ports_are_published_to_this_host_only_and_do_not_collide():
    """Each scraped service publishes its metrics port on 127.0.0.1, each on its own host port."""
    published = [p for s in DREAMBOT.values() for p in s.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published)
    host_ports = [p.split(":")[1] for p in published]
    assert len(host_ports) == len(set(host_ports))
