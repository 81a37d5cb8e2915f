"""An S3-compatible object store on 127.0.0.1 for tests: moto's server mode, one per session, a fresh bucket per test.

moto is what the tests can run without a container: no S3-compatible server (MinIO, SeaweedFS, Garage) installs
from PyPI or Debian. The server speaks the S3 HTTP API, so the code under test goes through boto3's real
client, endpoint and credentials from the environment, exactly as against a real store.
"""

from __future__ import annotations

import logging
import uuid

import pytest

ACCESS_KEY = "dreambot-test-key"
SECRET_KEY = "dreambot-test-secret-do-not-log"


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """The URL of a moto S3 server running in this process's threads."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request would drown a failure's log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch) -> str:
    """AWS_* variables pointing boto3 at the test server, as an operator would set them; returns the endpoint."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_endpoint


@pytest.fixture
def s3_bucket(s3_env) -> str:
    """A new, empty bucket on the test server."""
    name = f"dreambot-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name)
    return name


def s3_client():
    import boto3

    return boto3.session.Session().client("s3")


def s3_keys(bucket: str, prefix: str = "") -> list[str]:
    """Every key in the bucket (under `prefix`), sorted."""
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))
