"""Every module imports (catches syntax errors and broken imports in code no other test reaches)."""
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "collect", "sft", "reward", "rl", "eval", "demo", "cli")
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts)
    for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module):
    importlib.import_module(module)


def test_cli_help_lists_stages(capsys):
    from cli.main import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for stage in ("demo", "base", "sft", "collect", "reward", "dpo", "ppo", "eval", "chat", "export", "data"):
        assert f"  {stage} " in out
    assert main(["sft", "--help"]) == 0
    assert "--lora_r" in capsys.readouterr().out
