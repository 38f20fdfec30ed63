"""A non-editable install (a wheel, ``pip install .``) finds ui/, models/ and resources/ through the package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("app", "ui", "models", "resources", "setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in",
           "README.md")

CHECK = r'''
import json, os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import app
from app.core.model_io import bundled_models, default_model_path
from app.core.sources import DEMO_CLIP
from app.gui.main_window import UI_FILE
from app.gui.training_dialog import UI_FILE as TRAINING_UI
print(json.dumps({"app": app.__file__, "model": str(default_model_path()), "demo": str(DEMO_CLIP),
                  "ui": [str(UI_FILE), str(TRAINING_UI)], "bundled": [str(p) for p in bundled_models()]}))
'''


def test_wheel_ships_and_finds_the_bundled_folders(tmp_path: Path, data_dir: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:  # a copy, so the build leaves nothing in the checkout
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "_bundled"))
        else:
            shutil.copy2(path, source / name)
    wheels, target = tmp_path / "wheels", tmp_path / "installed"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(wheels)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("fer_studio-*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]

    env = dict(os.environ, PYTHONPATH=str(target))
    run = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    inside = str(target / "app")
    assert found["app"].startswith(inside)  # the installed copy, not the checkout
    for path in [found["model"], found["demo"], *found["ui"], *found["bundled"]]:
        assert path.startswith(inside) and Path(path).is_file(), path
    assert len(found["bundled"]) >= 2

    predict = subprocess.run([sys.executable, "-m", "app.cli", "predict", str(data_dir / "justin.jpg"), "--json"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert json.loads(predict.stdout)["faces"][0]["label"] == "happy"  # the bundled model, from the wheel
