"""requirements.lock against pyproject.toml and the installed packages.

The lock pins every package to the version the suite passed on; pyproject.toml keeps the ranges a
user's own environment may take. They must agree: each declared dependency is pinned in the lock
to a version inside its range, and the environment running these tests is the locked one."""
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;#]+)")


def lock_pins(text: str) -> dict[str, Version]:
    pins = {}
    for line in text.splitlines():
        m = PIN.match(line)
        if m:
            pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def disagreements(pyproject: dict, pins: dict[str, Version]) -> list[str]:
    """Each declared requirement (dependencies and every extra) that the lock leaves out or pins
    outside its range, as one line each."""
    project = pyproject["project"]
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    out = []
    for spec in declared:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name not in pins:
            out.append(f"{req.name}: declared in pyproject.toml, missing from requirements.lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            out.append(f"{req.name}: lock pins {pins[name]}, outside pyproject's '{req.specifier}'")
    return out


def test_lock_covers_every_declared_dependency_within_its_range():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = lock_pins((ROOT / "requirements.lock").read_text())
    assert len(pins) > 50  # the whole tree, not only the direct dependencies
    assert pins["torch"] == Version("2.13.0")
    assert disagreements(pyproject, pins) == []


def test_disagreements_are_found():
    pyproject = {"project": {"dependencies": ["trl>=1.16,<1.17", "numpy>=2"],
                             "optional-dependencies": {"test": ["pytest>=9"]}}}
    pins = lock_pins("trl==1.17.0\n    # via x\nnumpy==2.4.6\n")
    assert disagreements(pyproject, pins) == [
        "trl: lock pins 1.17.0, outside pyproject's '<1.17,>=1.16'",
        "pytest: declared in pyproject.toml, missing from requirements.lock",
    ]


def test_installed_packages_are_the_locked_versions():
    """`make setup` installs from the lock; a package upgraded by hand shows here."""
    pins = lock_pins((ROOT / "requirements.lock").read_text())
    drift = []
    for name, want in pins.items():
        try:
            have = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            drift.append(f"{name}: not installed, locked {want}")
            continue
        if have.public != want.public:
            drift.append(f"{name}: installed {have}, locked {want}")
    assert drift == [], "reinstall with `make clean setup`: " + "; ".join(drift)
