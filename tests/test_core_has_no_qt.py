"""app/core must not import Qt (or pyqtgraph): the CLI, the tests and worker processes run it headless."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "app" / "core"
FORBIDDEN = ("PyQt5", "PyQt6", "PySide2", "PySide6", "PySide", "pyqtgraph", "qtpy", "sip")


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.append((str(node.args[0].value), node.lineno))
    return found


def test_core_modules_exist() -> None:
    names = {str(p.relative_to(CORE)) for p in CORE.rglob("*.py")}
    assert {"images.py", "recognition/detection.py", "recognition/classifier.py", "recognition/pipeline.py",
            "recognition/recognizer.py", "recognition/annotate.py", "recognition/tracking.py"} <= names


def test_no_qt_imports_in_core() -> None:
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for module, line in _imports(tree):
            if module.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(CORE.parents[1])}:{line} imports {module}")
    assert not offenders, "app/core must stay Qt-free:\n" + "\n".join(offenders)


def test_checker_catches_qt_import(tmp_path: Path) -> None:
    # The walker itself must see all import forms, or the test above could pass vacuously.
    source = "import PyQt5.QtCore\nfrom pyqtgraph import PlotWidget\nimportlib.import_module('PySide6')\n"
    modules = [m for m, _ in _imports(ast.parse(source))]
    assert modules == ["PyQt5.QtCore", "pyqtgraph", "PySide6"]
