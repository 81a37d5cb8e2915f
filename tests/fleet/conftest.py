"""Fleet fixtures: a tiny base model made once, and the storage the fleet shares: a PostgreSQL database and an
object-store bucket of their own, on the session's servers (tests.pg_server, tests.s3_server)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fleet.processes import ROOT

STORE_PREFIX = "fleet"  # the fleet's objects are under s3://<bucket>/fleet/


@pytest.fixture(scope="module")
def fleet_model(tmp_path_factory) -> Path:
    """`dreambot make-tiny-model`: a random SD 1.x-shaped model (64 px) with its pass-through safety checker."""
    out = tmp_path_factory.mktemp("fleet-model") / "tiny"
    subprocess.run([sys.executable, "-m", "cli.main", "make-tiny-model", str(out), "--seed", "0"], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)
    return out


@dataclass(frozen=True)
class FleetStorage:
    """What every fleet process shares, as DREAMBOT_* and AWS_* variables, and what the test reads itself."""
    env: dict[str, str]
    database_url: str
    bucket: str

    def keys(self, prefix: str) -> list[str]:
        """The bucket's keys under STORE_PREFIX/prefix, sorted."""
        client = _client(self.env)
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{STORE_PREFIX}/{prefix}")
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _client(env: dict[str, str]):
    import boto3

    return boto3.session.Session().client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_DEFAULT_REGION"])


@pytest.fixture(scope="module")
def fleet_storage(pg_server, s3_endpoint) -> FleetStorage:
    """A new PostgreSQL database and a new bucket: the only things the fleet's processes share."""
    from tests.s3_server import ACCESS_KEY, SECRET_KEY

    name = f"fleet_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1"}
    bucket = f"dreambot-{name.replace('_', '-')}"
    _client(env).create_bucket(Bucket=bucket)
    yield FleetStorage(env={"DREAMBOT_STORAGE_DATABASE_URL": url,
                            "DREAMBOT_STORAGE_BLOB_URL": f"s3://{bucket}/{STORE_PREFIX}", **env},
                       database_url=url, bucket=bucket)
    pg_server.drop_database(name)
