"""Release metadata of every distribution: version bounds, declared imports, READMEs, versions."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import import_module
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "packages" / "cfm-core"
APPS = sorted((ROOT / "apps").glob("*/pyproject.toml"))


def _project(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text())["project"]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_level_modules(src: Path) -> set[str]:
    names = set()
    for file in src.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names)


def test_the_workspace_has_the_five_apps():
    assert [path.parent.name for path in APPS] == ["geometry", "image", "pose", "sdf", "toy"]


@pytest.mark.parametrize("folder", [CORE, *(path.parent for path in APPS)], ids=lambda p: p.name)
def test_every_imported_package_is_declared(folder):
    """Each import of a package's sources names a dependency of it (for cfm-core: or of an extra)."""
    project = _project(folder)
    extras = [spec for specs in project.get("optional-dependencies", {}).values() for spec in specs]
    declared = {_normalise(Requirement(spec).name) for spec in project["dependencies"] + extras}
    own = {project["name"].replace("-", "_")}
    distributions = packages_distributions()
    missing = []
    for module in sorted(_imported_top_level_modules(folder / "src") - own):
        names = {_normalise(module)} if module.startswith("cfm_") else set()
        names |= {_normalise(d) for d in distributions.get(module, [])}
        if not names & declared:
            missing.append(f"{module} ({', '.join(sorted(names)) or 'no installed distribution'})")
    assert not missing, f"{project['name']} imports undeclared packages: {missing}"


@pytest.mark.parametrize("pyproject", APPS, ids=lambda p: p.parent.name)
def test_each_app_pins_a_compatible_core_and_ships_its_readme(pyproject):
    project = _project(pyproject.parent)
    core = [Requirement(spec) for spec in project["dependencies"] if Requirement(spec).name == "cfm-core"]
    assert len(core) == 1, "an app requires cfm-core exactly once"
    core_version = _project(CORE)["version"]
    major, minor = (int(part) for part in core_version.split(".")[:2])
    assert core[0].specifier.contains(core_version), f"{core[0]} excludes the workspace's cfm-core {core_version}"
    assert not core[0].specifier.contains(f"{major}.{minor + 1}.0"), f"{core[0]} admits the next minor release"
    assert project["readme"] == "README.md" and (pyproject.parent / "README.md").is_file()


@pytest.mark.parametrize("folder", [CORE, *(path.parent for path in APPS)], ids=lambda p: p.name)
def test_version_attribute_matches_the_distribution(folder):
    project = _project(folder)
    module = import_module(project["name"].replace("-", "_"))
    assert module.__version__ == project["version"] == version(project["name"])
