"""The dependency rule (docs/architecture.md): core ← stage packages ← demo/, loop/, sweep/ and the CLI.

Every import statement of every module is read from its source (ast), function-local imports
included, so a lazy `from demo import oracle` inside a function counts as much as one at the top.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("sft", "collect", "reward", "rl", "eval")
ON_TOP = ("demo", "loop", "sweep", "cli")
# The few imports between stages the design allows: RL optimizes the reward model's score; eval
# scores with it (and its calibration metric), reads human votes from the annotation store and
# queues flagged outputs into it.
SIDEWAYS = {"rl": {"reward"}, "eval": {"reward", "collect"}}


def imported_packages(path: Path) -> dict[str, int]:
    """Top-level package → first line importing it, for every absolute import in the file."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            found.setdefault(name.split(".")[0], node.lineno)
    return found


def modules(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def test_the_parser_sees_function_local_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef g():\n    from demo.oracle import score\n    import cli.main\n")
    assert imported_packages(f) == {"os": 1, "demo": 4, "cli": 5}


@pytest.mark.parametrize("path", modules("core", *STAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_stage_or_core_module_imports_what_sits_on_top(path):
    bad = {pkg: line for pkg, line in imported_packages(path).items() if pkg in ON_TOP}
    assert not bad, f"{path.relative_to(ROOT)} imports {', '.join(f'{p} (line {n})' for p, n in bad.items())}"


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_stage(path):
    bad = sorted(set(imported_packages(path)) & set(STAGES))
    assert not bad, f"{path.relative_to(ROOT)} imports the stage package(s) {bad}"


@pytest.mark.parametrize("stage", STAGES)
def test_stages_import_each_other_only_where_allowed(stage):
    for path in modules(stage):
        others = set(imported_packages(path)) & set(STAGES) - {stage}
        assert others <= SIDEWAYS.get(stage, set()), f"{path.relative_to(ROOT)} imports {sorted(others)}"


def test_every_package_is_covered():
    """A new top-level package must be placed in the rule (here and in docs/architecture.md)."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == {"core", *STAGES, *ON_TOP}


@pytest.mark.parametrize("path", modules("sweep"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_sweep_knows_no_demo_and_no_stage_code(path):
    """A sweep runs each trial as the stage's own command, so it works alike on every run; it reads
    the stages' config classes from core only."""
    bad = sorted(set(imported_packages(path)) & {"demo", "loop", "cli", *STAGES})
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
