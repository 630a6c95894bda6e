"""The framework knows no application: nothing under mpc/ imports crm/ (statically or by name).

Applications plug in through entry points (mpc/plugins.py); this test is the check that keeps
the dependency one-way, and it fails on the first import that crosses it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORK = sorted(p for p in (ROOT / "mpc").rglob("*.py") if "v1" not in p.relative_to(ROOT / "mpc").parts)


def crossings(path: Path, root: Path = ROOT) -> list[str]:
    """Every place in ``path`` that imports the application package (or names it for importlib)."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module", "__import__",
        ):
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        out += [f"{path.relative_to(root)}:{node.lineno} {n}" for n in names if n == "crm" or n.startswith("crm.")]
    return out


def test_the_framework_files_are_found() -> None:
    assert len(FRAMEWORK) > 30 and any(p.name == "server.py" for p in FRAMEWORK)


@pytest.mark.parametrize("path", FRAMEWORK, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_framework_module_imports_the_crm(path: Path) -> None:
    assert crossings(path) == []


def test_the_check_catches_a_crossing(tmp_path: Path) -> None:
    bad = tmp_path / "mpc" / "x.py"
    bad.parent.mkdir()
    bad.write_text(
        "import crm.churn\nfrom crm.recommender import service\nimport importlib\n"
        "importlib.import_module('crm.churn.cli')\nfrom mpc import errors\n"
    )
    found = [c.split(" ", 1)[1] for c in crossings(bad, tmp_path)]
    assert found == ["crm.churn", "crm.recommender", "crm.churn.cli"]
