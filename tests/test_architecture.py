"""Dependencies point inward: bot -> storage <- trainer, checked on every import statement."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BANNED = {
    "storage": {"torch", "torchvision", "diffusers", "transformers", "peft", "accelerate", "bitsandbytes",
                "discord", "bot", "trainer"},
    "bot": {"torch", "torchvision", "diffusers", "transformers", "peft", "accelerate", "bitsandbytes", "trainer"},
    "trainer": {"discord", "bot"},
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(BANNED))
def test_package_imports_stay_on_their_side(package):
    """No module of the package imports a banned package, even inside a function."""
    crossings = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in sorted((ROOT / package).rglob("*.py"))
                 for line, name in _imports(path) if name in BANNED[package]]
    assert crossings == []


def test_dreambot_command_loads_no_heavy_library_to_parse():
    """Building the `dreambot` parser (so every light command) imports neither torch nor discord."""
    import subprocess
    import sys
    code = ("import sys, cli.main; cli.main.build_parser(); "
            "print(sorted(m for m in ('torch', 'diffusers', 'discord') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
