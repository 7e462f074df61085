"""The package boundaries: cfm_core imports no app, and no app imports another app.

The sources are parsed with :mod:`ast` (nothing is imported): ``import x``, ``from x import y``
and module names in strings (``lazy("cfm_image.commands:run_train")``, ``importlib`` targets)
count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CORE = ROOT / "packages" / "cfm-core" / "src" / "cfm_core"
APPS = {path.name: path for path in sorted(ROOT.glob("apps/*/src/cfm_*")) if path.is_dir()}


def referenced_modules(path: Path) -> set[str]:
    """The top-level package of every module ``path`` imports or names in a string."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("cfm_"):
            names.add(node.value.partition(":")[0])
    return {name.partition(".")[0] for name in names}


def crossings(package: Path, forbidden: set[str]) -> list[str]:
    """``"file: module"`` for every reference from a source file of ``package`` to ``forbidden``."""
    return [
        f"{source.relative_to(package.parent)}: {module}"
        for source in sorted(package.rglob("*.py"))
        for module in sorted(referenced_modules(source) & forbidden)
    ]


def test_every_app_is_found():
    assert set(APPS) == {"cfm_geometry", "cfm_image", "cfm_pose", "cfm_sdf", "cfm_toy"}
    for name, package in APPS.items():  # the parser sees each app's use of the core
        assert any("cfm_core" in referenced_modules(f) for f in package.rglob("*.py")), name


def test_core_imports_no_app():
    assert len(list(CORE.rglob("*.py"))) > 20
    assert crossings(CORE, set(APPS)) == []


@pytest.mark.parametrize("app", sorted(APPS))
def test_apps_import_no_other_app(app):
    assert crossings(APPS[app], set(APPS) - {app}) == []


def test_a_planted_crossing_is_found(tmp_path):
    package = tmp_path / "cfm_core"
    package.mkdir()
    (package / "fine.py").write_text("import torch\nfrom cfm_core.nn import time_features\nfrom . import x\n")
    (package / "bad.py").write_text("def f():\n    from cfm_image.unet import UNet\n")
    (package / "lazy.py").write_text("TARGET = 'cfm_toy.commands:run_train'\nimport cfm_pose.config as c\n")
    assert crossings(package, set(APPS)) == [
        "cfm_core/bad.py: cfm_image",
        "cfm_core/lazy.py: cfm_pose",
        "cfm_core/lazy.py: cfm_toy",
    ]
