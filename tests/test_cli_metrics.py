"""`dreambot run --metrics-port`: the bot serves on the port, the worker it supervises on the next one."""

from __future__ import annotations

from bot.cli import worker_command, worker_metrics_flags
from cli.main import build_parser


def test_the_supervised_worker_serves_its_metrics_on_the_next_port():
    """run's worker command is a real `dreambot worker` invocation with --metrics-port PORT+1, same host."""
    command = worker_command("fleet.toml", worker_metrics_flags(9100, "0.0.0.0"))
    assert command[command.index("--config") + 1] == "fleet.toml"
    args = build_parser().parse_args(command[command.index("cli.main") + 1:])
    assert (args.command, args.metrics_port, args.metrics_host) == ("worker", 9101, "0.0.0.0")


def test_without_metrics_the_worker_gets_no_metrics_flags():
    """No --metrics-port on run: the worker serves none either."""
    assert worker_command(None, worker_metrics_flags(None, "127.0.0.1"))[-1] == "worker"
