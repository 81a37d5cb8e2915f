"""The metrics server and its flags: a clear refusal for a bad or busy port, the same flags on every command."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from cli.main import build_parser
from storage import metrics
from storage.errors import DreambotError
from tests.metrics_scrape import scrape


@pytest.mark.parametrize("command", [["run"], ["bot"], ["worker"]])
def test_long_running_commands_take_metrics_port_and_host(command):
    """run, bot and worker accept --metrics-port and --metrics-host; the host defaults to this machine only."""
    args = build_parser().parse_args([*command, "--metrics-port", "9100"])
    assert (args.metrics_port, args.metrics_host) == (9100, "127.0.0.1")
    assert build_parser().parse_args(command).metrics_port is None  # no flag: no server


@pytest.mark.parametrize("bad", ["70000", "-1", "http"])
def test_a_bad_metrics_port_is_refused_by_the_parser(bad, capsys):
    """A port outside 0-65535 stops the command with a message naming the flag and the range."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--metrics-port", bad])
    assert "--metrics-port: invalid port number (0-65535) value" in capsys.readouterr().err


def test_a_busy_port_says_to_choose_another():
    """A port another process holds is refused with what to do, not a traceback."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(DreambotError, match=f"cannot listen on 127.0.0.1:{port}.*Choose a free port"):
            metrics.serve(port)


def test_the_server_lists_every_dreambot_metric_with_its_help():
    """A scrape of a fresh server names the metrics the README lists (label-less ones with a value)."""
    port = metrics.serve(0)
    samples = scrape(port)
    assert ("dreambot_outbox_oldest_undelivered_seconds", frozenset()) in samples
    assert ("dreambot_train_step_seconds_count", frozenset()) in samples
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for name in ("dreambot_queue_jobs", "dreambot_job_duration_seconds", "dreambot_train_step_seconds",
                 "dreambot_gpu_memory_bytes", "dreambot_outbox_oldest_undelivered_seconds",
                 "dreambot_outbox_delivery_failures_total", "dreambot_discord_api_errors_total"):
        assert f"# HELP {name} " in text
