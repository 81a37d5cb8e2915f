"""`dreambot <command>`: parses arguments, loads the config once, runs the chosen command.

Each package registers its own commands (storage.cli, storage.admin, trainer.cli, trainer.eval_cli,
trainer.verify_cli, bot.cli);
their modules import nothing heavy at the top, so `dreambot check-photos` never loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from storage import blobs, logs
from storage.config import ConfigError, load
from storage.errors import DreambotError

COMMAND_MODULES = ("storage.cli", "storage.admin", "trainer.cli", "trainer.eval_cli", "trainer.verify_cli",
                   "bot.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreambot", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="path to config.toml (default: $DREAMBOT_CONFIG or ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = load(args.config)
        logs.configure(cfg.logging.format, verbose=args.verbose)  # [logging] format: text or json, redacted
        blobs.attach(cfg.storage)  # storage.blob_url: every command's files go through the object store
        return int(args.func(args, cfg) or 0)
    except ConfigError as exc:
        print(f"dreambot: configuration error: {exc}", file=sys.stderr)
        return 2
    except DreambotError as exc:
        print(f"dreambot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
